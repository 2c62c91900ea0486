"""Colour control: keep the content photo's colours in a stylized image.

Luminance-only transfer (Gatys, Bethge, Hertzmann, Shechtman, "Preserving Color
in Neural Artistic Style Transfer", 2016, and Gatys et al. 2017 sec. 5.1): the
output takes its luminance (Y of YIQ) from the stylized image and its chroma
(I, Q) from the content photo, as jcjohnson/neural-style's ``-original_colors``.
"""

import numpy as np
import skimage.color


def rgb_to_yiq(image):
    """RGB to NTSC YIQ (scikit-image's ``rgb2yiq``, FCC 1953 coefficients).

    The transform is linear, so it works in the library's [0, 255] units: Y in [0, 255],
    I in about [-152, 152], Q in about [-133, 133]. (``tf.image.rgb_to_yiq`` rounds the
    coefficients differently, by up to 9e-3, so the two disagree slightly.)

    Args:
        image: float array ``[..., 3]``, RGB.

    Returns:
        float32 array of the same shape and units.
    """
    return skimage.color.rgb2yiq(np.asarray(image, np.float64)).astype(np.float32)


def yiq_to_rgb(image):
    """YIQ to RGB, the inverse of :func:`rgb_to_yiq` (up to float32 rounding); float32, same shape."""
    return skimage.color.yiq2rgb(np.asarray(image, np.float64)).astype(np.float32)


def transfer_luminance(stylized, content):
    """Combines the stylized image's luminance with the content image's chroma.

    Args:
        stylized: float array ``[1, H, W, 3]``, RGB in [0, 255].
        content: float array ``[1, H, W, 3]``, RGB in [0, 255], same size.

    Returns:
        float32 array ``[1, H, W, 3]``, RGB clipped to [0, 255].

    Raises:
        ValueError: the two shapes differ.
    """
    stylized, content = np.asarray(stylized), np.asarray(content)
    if stylized.shape != content.shape:
        raise ValueError(f"Images must have the same shape. Received: {stylized.shape} and {content.shape}")
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(stylized)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 255.0)


def luminance_image(image):
    """The luminance Y of an RGB image, repeated in three channels (a grey RGB image).

    Args:
        image: float array ``[..., 3]``, RGB in [0, 255].

    Returns:
        float32 array of the same shape, R = G = B = Y.
    """
    luma = rgb_to_yiq(image)[..., :1]
    return np.repeat(luma, 3, axis=-1).astype(np.float32)


def match_luminance(style, content):
    """Shifts and scales the style's luminance to the content's mean and standard deviation.

    Gatys et al. 2017 sec. 5.1 eq. 9: ``L_s' = sigma_c / sigma_s * (L_s - mu_s) + mu_c``, so
    luminance-only transfer does not also transfer the painting's overall brightness.

    Args:
        style, content: float arrays ``[..., 3]`` (grey or RGB) in [0, 255].

    Returns:
        float32 array shaped like ``style``, clipped to [0, 255].
    """
    style, content = np.asarray(style, np.float64), np.asarray(content, np.float64)
    scale = content.std() / max(style.std(), 1e-6)
    return np.clip((style - style.mean()) * scale + content.mean(), 0.0, 255.0).astype(np.float32)


def match_color(style, content, method="covariance"):
    """Recolours the style image with the content image's colour statistics.

    ``covariance``: the affine map ``x' = A (x - mu_s) + mu_c`` with
    ``A = Sigma_c^(1/2) Sigma_s^(-1/2)`` (symmetric square roots), which gives the style
    exactly the content's RGB mean and covariance (Gatys et al. 2017 sec. 5.2; Hertzmann
    2001 "Image Analogies").  ``histogram``: per-channel histogram matching by
    ``skimage.exposure.match_histograms``.

    Args:
        style: float array ``[1, h, w, 3]`` RGB in [0, 255].
        content: float array ``[1, H, W, 3]`` RGB in [0, 255].
        method: ``covariance`` or ``histogram``.

    Returns:
        float32 array shaped like ``style``, clipped to [0, 255].

    Raises:
        ValueError: unknown method.
    """
    style, content = np.asarray(style, np.float64), np.asarray(content, np.float64)
    if method == "histogram":
        from skimage.exposure import match_histograms

        return np.clip(match_histograms(style[0], content[0], channel_axis=-1), 0, 255)[None].astype(np.float32)
    if method != "covariance":
        raise ValueError(f"Unknown colour matching method. Received: method={method!r}")
    pixels_s, pixels_c = style.reshape(-1, 3), content.reshape(-1, 3)
    mean_s, mean_c = pixels_s.mean(0), pixels_c.mean(0)
    eps = 1e-5 * np.eye(3)  # Flat images have singular covariance.
    transform = _sqrtm(np.cov(pixels_c.T) + eps) @ np.linalg.inv(_sqrtm(np.cov(pixels_s.T) + eps))
    matched = (pixels_s - mean_s) @ transform.T + mean_c
    return np.clip(matched, 0, 255).reshape(style.shape).astype(np.float32)


def _sqrtm(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T
