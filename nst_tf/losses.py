"""Perceptual losses of neural style transfer: Gram matrix, content, style, total variation.

All functions take float32 tensors in NHWC layout and return float32 scalars (or
``[batch]`` vectors where stated).  Features are whatever ``FeatureExtractor``
returns; the image is the library's pixel contract, RGB in [0, 255].

Sources: Gatys, Ecker, Bethge, "Image Style Transfer Using Convolutional Neural
Networks", CVPR 2016 (eq. 1, 3, 4, 5); Johnson, Alahi, Fei-Fei, "Perceptual Losses
for Real-Time Style Transfer and Super-Resolution", ECCV 2016 (sec. 3.2);
Mahendran and Vedaldi, "Understanding Deep Image Representations by Inverting
Them", CVPR 2015 (total variation).
"""

import keras
import tensorflow as tf


def gram_matrix(features, mask=None):
    """Gram matrix of feature maps, normalized by the number of spatial locations.

    ``G[b, c, d] = sum_ij F[b, i, j, c] * F[b, i, j, d] / M`` with ``M = H * W``
    (Gatys 2016 eq. 3, divided by M as in Johnson 2016 eq. 4 without the 1/C).
    The normalization makes Gram matrices of one image at two sizes comparable,
    which is what lets a style image of any size drive an output of any size.
    Computed as one batched matmul with a one-matmul gradient (see
    :func:`_gram_product`): the Gram matrices are ~7% of a VGG19 step's FLOPs but
    took 13% of its time with TensorFlow's generic einsum gradient (BENCHMARKS.md).

    Args:
        features: float tensor ``[B, H, W, C]``.
        mask: optional float tensor ``[B, H, W, 1]`` (or ``[B, H, W]``) of weights in
            [0, 1], for guided Gram matrices (Gatys et al. 2017, sec. 4): features
            are multiplied by the mask and ``M`` is the sum of the squared mask
            (the mask enters both factors) instead of H*W.

    Returns:
        float32 tensor ``[B, C, C]``.
    """
    features = tf.cast(features, tf.float32)
    if mask is None:
        locations = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
    else:
        mask = tf.cast(mask, tf.float32)
        if mask.shape.rank == 3:
            mask = mask[..., None]
        features = features * mask
        locations = tf.maximum(tf.reduce_sum(tf.square(mask), axis=[1, 2, 3]), 1.0)[:, None, None]
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    return _gram_product(flat) / locations


@tf.custom_gradient
def _gram_product(flat):
    """``flat^T flat`` for ``[B, N, C]`` -> ``[B, C, C]`` with the gradient ``F (dG + dG^T)``.

    TensorFlow differentiates a product through each operand separately (two matmuls
    and an add); for the symmetric ``F^T F`` one matmul gives the same gradient.
    """

    def gradient(upstream):
        return tf.matmul(flat, upstream + tf.linalg.matrix_transpose(upstream))

    return tf.matmul(flat, flat, transpose_a=True), gradient


def content_loss(features, target):
    """Content (feature reconstruction) loss of one layer.

    Mean squared difference ``mean((F - P)^2)``: Gatys 2016 eq. 1 up to the
    constant 1/2 and normalized by the number of elements, so the weight that
    balances it does not depend on the image size (as in Johnson 2016 eq. 2).

    Args:
        features: float tensor ``[B, H, W, C]``, features of the generated image.
        target: float tensor broadcastable to ``features``, features of the content.

    Returns:
        float32 scalar.
    """
    diff = tf.cast(features, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.square(diff))


def style_layer_loss(gram, target_gram):
    """Style loss of one layer, Gatys 2016 eq. 4 on location-normalized Gram matrices.

    ``E_l = 1 / (4 N_l^2 M_l^2) * sum (G - A)^2`` with raw Gram matrices equals
    ``mean((g - a)^2) / 4`` with the Gram matrices of :func:`gram_matrix`
    (``g = G / M_l``; the mean runs over the ``N_l^2`` entries).

    Args:
        gram: float tensor ``[B, C, C]`` from :func:`gram_matrix`.
        target_gram: float tensor broadcastable to ``gram``.

    Returns:
        float32 scalar (mean over the batch).
    """
    return tf.reduce_mean(tf.square(gram - tf.cast(target_gram, tf.float32))) / 4.0


def style_loss(features, target_grams, layer_weights=None, masks=None):
    """Weighted sum of per-layer style losses, Gatys 2016 eq. 5.

    Args:
        features: dict ``{layer_name: [B, H, W, C] tensor}``.
        target_grams: dict ``{layer_name: [B or 1, C, C] tensor}``; its keys select
            the layers used.
        layer_weights: dict ``{layer_name: float}`` (``w_l``); defaults to
            ``1 / number_of_layers`` each, Gatys' choice.
        masks: optional dict ``{layer_name: [B, H, W, 1]}`` for guided Gram matrices.

    Returns:
        float32 scalar ``sum_l w_l * E_l``.

    Raises:
        KeyError: a target layer is missing from ``features``.
    """
    names = list(target_grams)
    if layer_weights is None:
        layer_weights = {name: 1.0 / len(names) for name in names}
    total = tf.constant(0.0)
    for name in names:
        mask = None if masks is None else masks[name]
        gram = gram_matrix(features[name], mask)
        total += float(layer_weights[name]) * style_layer_loss(gram, target_grams[name])
    return total


def total_variation_loss(image):
    """Anisotropic total variation, mean absolute difference of neighbouring pixels.

    ``mean_ij |x[i+1, j] - x[i, j]| + mean_ij |x[i, j+1] - x[i, j]|`` over batch and
    channels: a smoothness prior that suppresses high-frequency noise
    (Mahendran and Vedaldi 2015; used by Johnson 2016 sec. 3.3).  A mean rather
    than ``tf.image.total_variation``'s sum keeps its weight independent of size.

    Args:
        image: float tensor ``[B, H, W, C]``, any value range (pixels here).

    Returns:
        float32 scalar, in the image's units per pixel; zero for a constant image.
    """
    return tf.reduce_mean(_total_variation_per_sample(image))


SATURATION_THRESHOLD = 2.5
"""Pre-tanh value beyond which :func:`saturation_loss` applies: ``127.5 * (tanh(2.5) + 1)`` is 1.7 and 253.3."""


def saturation_loss(logits, threshold=SATURATION_THRESHOLD):
    """Mean squared excess of a tanh output layer's pre-activation over `threshold`.

    ``mean(max(|z| - threshold, 0)^2)`` over batch, pixels and channels.  A network
    whose output is ``127.5 * (tanh(z) + 1)`` gets almost no gradient where ``|z|`` is
    large (``tanh'(5) = 2e-4``), so a region pushed there stays flat white or black
    whatever the content and style losses say: the blobs that fast style transfer
    networks paint into bright skies.  This term pulls such pixels back to where
    those losses reach them again, and is zero everywhere else.

    Args:
        logits: float tensor ``[B, H, W, C]``, the pre-tanh output.
        threshold: float >= 0. Defaults to :data:`SATURATION_THRESHOLD`.

    Returns:
        float32 scalar >= 0, in squared logit units; zero when every ``|z| <= threshold``.
    """
    excess = tf.nn.relu(tf.abs(tf.cast(logits, tf.float32)) - threshold)
    return tf.reduce_mean(tf.square(excess))


DROPLET_THRESHOLD = 6.0
"""Local RMS of a standardized activation, in standard deviations, beyond which :func:`droplet_loss` applies."""

DROPLET_WINDOW = 5
"""Side, in positions, of the neighbourhood over which :func:`droplet_loss` averages."""


def droplet_loss(activations, threshold=DROPLET_THRESHOLD, window=DROPLET_WINDOW):
    """Penalty on compact regions of extreme activation: instance normalization's droplets.

    Karras et al. ("Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020,
    sec. 2) show that a network with instance normalization learns to place one strong,
    localized spike in its feature maps: it dominates each channel's mean and variance
    and so steers the normalization, at the price of a smooth, untextured blob in the
    output.  Each channel of each example is standardized over its positions; the
    squared values are averaged over a ``window x window`` neighbourhood (a local mean
    square, so that thin edges, extreme at a few positions only, stay below the
    threshold while a blob, extreme over an area, does not); the loss is the mean
    excess of that local mean square over ``threshold**2``.

    Args:
        activations: sequence of float tensors ``[B, H, W, C]`` (any dtype; computed in
            float32), e.g. the block outputs of
            :meth:`nst_tf.transformer.TransformerNet.call` with ``return_activations=True``.
        threshold: float > 0, standard deviations. Defaults to :data:`DROPLET_THRESHOLD`
            (droplets measure 15-25, edges and textures below 6 at the 99th percentile).
        window: int >= 1, positions. Defaults to :data:`DROPLET_WINDOW`.

    Returns:
        float32 scalar >= 0, in squared standard deviations, the mean over the
        activations; zero when no neighbourhood's mean square exceeds ``threshold**2``.
    """
    terms = []
    for value in activations:
        value = tf.cast(value, tf.float32)
        mean, variance = tf.nn.moments(value, axes=[1, 2], keepdims=True)
        energy = tf.nn.avg_pool2d(tf.square(value - mean) / (variance + 1e-5), window, 1, "SAME")
        terms.append(tf.reduce_mean(tf.nn.relu(energy - threshold ** 2)))
    return tf.add_n(terms) / len(terms)


def _total_variation_per_sample(image):
    image = tf.cast(image, tf.float32)
    dy = tf.reduce_mean(tf.abs(image[:, 1:] - image[:, :-1]), axis=[1, 2, 3])
    dx = tf.reduce_mean(tf.abs(image[:, :, 1:] - image[:, :, :-1]), axis=[1, 2, 3])
    return dx + dy


@keras.saving.register_keras_serializable(package="nst_tf")
class GramStyleLoss(keras.losses.Loss):
    """Keras loss between features and target features, compared by Gram matrices.

    ``y_true`` and ``y_pred`` are ``[B, H, W, C]`` features (H, W may differ);
    the loss is :func:`style_layer_loss` of their Gram matrices, per sample.
    """

    def __init__(self, name="gram_style_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        diff = gram_matrix(y_pred) - gram_matrix(y_true)
        return tf.reduce_mean(tf.square(diff), axis=[1, 2]) / 4.0


@keras.saving.register_keras_serializable(package="nst_tf")
class TotalVariationLoss(keras.losses.Loss):
    """Keras loss form of :func:`total_variation_loss` on ``y_pred`` (``y_true`` unused)."""

    def __init__(self, name="total_variation_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return _total_variation_per_sample(y_pred)
