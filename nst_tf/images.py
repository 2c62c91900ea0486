"""Reading, resizing and writing image files: the file edge of nst_tf.

Inside the library an image is a float32 RGB array of shape ``[1, H, W, 3]`` with
values in ``[0, 255]``. This module is the only place that turns files into that
contract and back. It needs only numpy and Pillow, so importing it stays fast.
"""

import contextlib
import math
import os
import pathlib
import stat
import uuid
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nst_tf.config import check_int
from nst_tf.errors import ImageError

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest image ``load_image`` decodes by default: 100 megapixels (1.2 GB as float32 RGB)."""

_FORMATS = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
    ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
}
SUPPORTED_OUTPUT_EXTENSIONS = tuple(_FORMATS)
"""File extensions ``save_image`` writes (lower case; matching ignores case)."""

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def _error(what, path, todo):
    return ImageError(f"{what} Received: path='{path}'. {todo}")


def check_image_file(path):
    """Checks, without decoding it, that `path` is a non-empty file one could read.

    Lets a command fail on a mistyped input path at once, before slow set-up
    (building a network, loading its weights) that :func:`load_image` would come after.

    Args:
        path: str or path-like.

    Returns:
        pathlib.Path of `path`.

    Raises:
        ImageError: the file is missing, cannot be accessed, is a directory or is empty.
    """
    path = pathlib.Path(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise _error("Image file not found.", path, "Check the path and its spelling.") from None
    except OSError as e:
        raise _error(f"Image file cannot be accessed ({e.strerror}).", path,
                     "Check the permissions of the file and its folders.") from None
    if stat.S_ISDIR(info.st_mode):
        raise _error("Expected an image file but got a directory.", path,
                     "Pass the path of an image file.")
    if info.st_size == 0:
        raise _error("Image file is empty (0 bytes).", path,
                     "The file was probably not written completely; export it again.")
    return path


def load_image(path, max_size=None, max_pixels=DEFAULT_MAX_PIXELS, min_size=1):
    """Reads an image file into the library's pixel contract.

    Any file Pillow reads works (JPEG, PNG, WebP, TIFF, BMP, the first frame of a GIF).
    The EXIF orientation is applied. Every mode becomes RGB: transparent pixels are
    composited on white; 16-bit modes (``I;16``, ``I``) are scaled from [0, 65535];
    ``F`` is scaled from [0, 1] when all its values lie there, else clipped to [0, 255].

    Args:
        path: str or path-like. The image file.
        max_size: int or None. If given, the image is resized (up or down, aspect kept)
            so that its longest side is `max_size` pixels. Defaults to None (no resize).
        max_pixels: int or None. Largest width * height accepted, read from the file
            header before anything is decoded. None disables this check (Pillow's own
            decompression-bomb guard, ``PIL.Image.MAX_IMAGE_PIXELS``, still applies).
            Defaults to ``DEFAULT_MAX_PIXELS`` (100 megapixels).
        min_size: int. Smallest shorter side, in pixels, accepted after resizing; the
            network needs a minimum extent. Defaults to 1.

    Returns:
        np.ndarray of shape [1, H, W, 3], float32 RGB, values in [0, 255].

    Raises:
        ImageError: the file is missing, a directory, empty, not an image, truncated
            or corrupt, has more than `max_pixels` pixels, or ends up smaller than
            `min_size`.
        ConfigError: `max_size`, `max_pixels` or `min_size` is not a positive integer.
    """
    check_int("max_size", max_size, 1, allow_none=True)
    check_int("max_pixels", max_pixels, 1, allow_none=True)
    check_int("min_size", min_size, 1)
    source = _open(path)
    with source:
        width, height = source.size
        _check_pixels(path, width, height, max_pixels)
        if max_size is not None and source.format == "JPEG" and max_size < max(width, height):
            # JPEG decodes at 1/2, 1/4 or 1/8 scale for a fraction of the time and memory;
            # draft() keeps at least the requested size, so the resize below stays exact.
            scale = max_size / max(width, height)
            source.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        try:
            # Decoding everything here is what detects truncated files (they are never
            # accepted silently: ImageFile.LOAD_TRUNCATED_IMAGES is left alone).
            source.load()
            pixels = _to_rgb_array(ImageOps.exif_transpose(source))
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise _error(f"Image file is truncated or corrupt ({e}).", path,
                         "Open it in an image viewer or export it again.") from None
    if max_size is not None:
        pixels = resize_longest_side(pixels, max_size)
    height, width = pixels.shape[:2]
    if min(height, width) < min_size:
        raise _error(f"Image is too small for the network: {width}x{height} pixels"
                     f"{' after resizing' if max_size else ''}, shorter side below "
                     f"min_size={min_size}.", path, "Use a larger image or a larger max_size.")
    return np.ascontiguousarray(pixels[None], dtype=np.float32)


def _open(path):
    """Opens (without decoding) an image file; ImageError on anything Pillow cannot open."""
    path = check_image_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns from ~89 megapixels; `max_pixels` is the documented limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as e:
        raise _error(f"Image has too many pixels for Pillow's decompression-bomb guard ({e}).",
                     path, "Use a smaller image or raise PIL.Image.MAX_IMAGE_PIXELS.") from None
    except UnidentifiedImageError:
        raise _error("File is not an image Pillow can read.", path,
                     "Use a JPEG, PNG, WebP, TIFF, BMP or GIF file.") from None
    except OSError as e:
        raise _error(f"Image file cannot be read ({e.strerror or e}).", path,
                     "Check its permissions.") from None


def _check_pixels(path, width, height, max_pixels):
    if max_pixels is not None and width * height > max_pixels:
        raise _error(f"Image has {width}x{height} = {width * height:,} pixels, more than "
                     f"max_pixels={max_pixels:,}.", path,
                     "Downscale the file or pass a larger max_pixels.")


def read_size(path, max_pixels=DEFAULT_MAX_PIXELS):
    """``(width, height)`` of an image file from its header, without decoding the pixels.

    Lets a caller check the cost of a run (memory of a given output size) before any
    image is loaded. The EXIF orientation is not applied (it may swap the two sides).

    Args:
        path: str or path-like. The image file.
        max_pixels: int or None. Largest width * height accepted; as :func:`load_image`.

    Returns:
        tuple of int ``(width, height)``, pixels.

    Raises:
        ImageError: missing, empty, not an image, or more than `max_pixels` pixels.
    """
    with _open(path) as source:
        width, height = source.size
    _check_pixels(path, width, height, max_pixels)
    return width, height


def _to_rgb_array(image):
    """Returns a float32 [H, W, 3] array in [0, 255] for a Pillow image of any mode."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        gray = np.asarray(image, dtype=np.float32)
        if image.mode != "F":
            gray = gray * (255 / 65535)
        elif np.all(np.isfinite(gray)) and gray.min() >= 0 and gray.max() <= 1:
            gray = gray * 255
        gray = np.clip(np.nan_to_num(gray), 0, 255)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255
        # White, as viewers show transparency, instead of whatever colour hides under alpha 0.
        return rgba[..., :3] * alpha + 255 * (1 - alpha)
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def resize_longest_side(image, size):
    """Resizes an image so that its longest side is `size` pixels, keeping the aspect.

    Lanczos resampling on float32 channels (Pillow mode ``F``), so no 8-bit rounding.

    Args:
        image: array-like of shape [1, H, W, 3] or [H, W, 3], values in [0, 255].
        size: int. Length in pixels of the longest side of the result (each side is
            at least 1 pixel). Works both up and down.

    Returns:
        np.ndarray float32 of the same rank as `image`, values clipped to [0, 255]
        (Lanczos overshoots at sharp edges).

    Raises:
        ImageError: `image` does not have one of the shapes above.
        ConfigError: `size` is not a positive integer.
    """
    check_int("size", size, 1)
    array = np.asarray(image, dtype=np.float32)
    batched = array.ndim == 4
    if array.ndim not in (3, 4) or array.shape[-1] != 3 or (batched and array.shape[0] != 1):
        raise ImageError(f"Expected an image of shape [1, H, W, 3] or [H, W, 3]. "
                         f"Received: shape={array.shape}")
    pixels = array[0] if batched else array
    height, width = pixels.shape[:2]
    scale = size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size != (width, height):
        pixels = np.stack([
            np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., c]))
                       .resize(new_size, Image.Resampling.LANCZOS))
            for c in range(3)], axis=-1)
    pixels = np.clip(pixels, 0, 255)
    return pixels[None] if batched else pixels


def to_uint8(image):
    """Converts float pixels in [0, 255] to uint8, rounding to nearest and clipping.

    Args:
        image: array-like (numpy array or TensorFlow tensor) of any shape. uint8 input
            is returned unchanged; NaN becomes 0.

    Returns:
        np.ndarray uint8 of the same shape.
    """
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    array = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def check_output_path(path):
    """Checks, without writing anything, that `save_image` can write to `path`.

    Lets a command line fail in a second rather than after a long optimization.

    Args:
        path: str or path-like. The intended output file.

    Returns:
        pathlib.Path of `path`.

    Raises:
        ImageError: the extension is not one of ``SUPPORTED_OUTPUT_EXTENSIONS``, `path`
            is a directory, or its nearest existing ancestor is a file or not writable.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise _error("Output path is an existing directory.", path,
                     "Give a file name inside it, e.g. out.png.")
    if path.suffix.lower() not in _FORMATS:
        raise _error(f"Unsupported output file extension '{path.suffix}'.", path,
                     f"Use one of: {', '.join(SUPPORTED_OUTPUT_EXTENSIONS)}.")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _error(f"Output folder cannot be created because '{ancestor}' is a file.",
                     path, "Choose another folder.")
    # Replacing the target and creating missing folders need write and search access.
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _error(f"Output folder '{ancestor}' is not writable.", path,
                     "Choose a folder you can write to.")
    return path


def save_image(image, path, quality=95):
    """Writes an image atomically: `path` holds either the old file or the complete new one.

    The format follows the extension (see ``SUPPORTED_OUTPUT_EXTENSIONS``). Missing
    parent folders are created.

    Args:
        image: array-like (numpy array or TensorFlow tensor) of shape [1, H, W, 3] or
            [H, W, 3]; float in [0, 255] (rounded and clipped) or uint8.
        path: str or path-like. The output file.
        quality: int. JPEG and WebP quality, 1 (smallest) to 100 (best); other formats
            are lossless and ignore it. Defaults to 95.

    Returns:
        pathlib.Path of the written file.

    Raises:
        ImageError: bad extension or shape, or the file cannot be written.
        ConfigError: `quality` is not an integer in [1, 100].
    """
    path = check_output_path(path)
    check_int("quality", quality, 1, 100)
    pixels = to_uint8(image)
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageError(f"Expected an image of shape [1, H, W, 3] or [H, W, 3]. "
                         f"Received: shape={np.shape(image)}")
    file_format = _FORMATS[path.suffix.lower()]
    options = {"quality": quality} if file_format in ("JPEG", "WEBP") else {}
    # The temporary file sits next to the target so os.replace is a same-filesystem
    # rename, which is atomic. os.open with 0o666 lets the umask set its permissions as
    # for any new file (mkstemp would leave the image readable by its owner only).
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise _error(f"Cannot create a file in the output folder ({e.strerror or e}).", path,
                     "Choose a folder you can write to.") from None
    try:
        with os.fdopen(fd, "wb") as file:
            Image.fromarray(pixels).save(file, format=file_format, **options)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(e, (OSError, ValueError)):
            raise _error(f"Could not write the image ({e}).", path,
                         "Check that the folder is writable and the disk is not full.") from e
        raise
    return path
