"""Applying a trained style network: whole images, large images in tiles, loading a network.

:func:`load_transformer` loads a ``.keras`` :class:`~nst_tf.transformer.TransformerNet`
with one-line errors; :class:`SavedModelStylizer` wraps an exported SavedModel version
folder (:mod:`nst_tf.export`) in the same pixel contract; :func:`load_stylizer` takes
either.  :func:`stylize_image` runs whole images through the network's cached
compiled graph (:mod:`nst_tf.inference`); :func:`stylize_tiled` stylizes large
images in bounded memory, every tile normalized with the instance-norm statistics of
a thumbnail of the whole image (Chen et al., "Towards Ultra-Resolution Neural Style
Transfer via Thumbnail Instance Normalization", AAAI 2022).

Pixel contract: float32 RGB ``[B, H, W, 3]`` in [0, 255], in and out.
"""

import functools
import pathlib

import keras
import numpy as np
import tensorflow as tf

from nst_tf import files, signatures
from nst_tf.config import MIN_ALIGNED_SIZE, SIZE_ALIGNMENT, check_int, style_selection_weights
from nst_tf.errors import ConfigError, ImageError, WeightsError
from nst_tf.inference import inference_graph, round_to_uint8
from nst_tf.transformer import MIN_INPUT_SIZE, TransformerNet, align_padding, style_matrix, with_dtype_policy

INFERENCE_PRECISIONS = ("float32", "bfloat16")
"""Precisions :func:`stylize_image` and :func:`stylize_tiled` can run a TransformerNet in."""


def load_transformer(path, dtype=None):
    """Loads a trained :class:`TransformerNet` from a ``.keras`` file.

    Safe mode stays on: the file holds only registered nst_tf layers, no code.

    Args:
        path: str or path-like. A ``.keras`` file written by ``model.save`` (e.g. by
            ``scripts/train.py``).
        dtype: optional dtype policy name (``"mixed_bfloat16"``) to run the loaded
            weights in; None keeps the saved policy.

    Returns:
        TransformerNet.

    Raises:
        WeightsError: the file is missing, a folder, not a Keras archive, corrupt,
            or holds another kind of model.
    """
    path = pathlib.Path(path)
    received = f"Received: path='{path}'"
    if path.is_dir():
        raise WeightsError(f"Expected a .keras model file but got {files.folder_kind(path)}. Pass the .keras file of a "
                           f"TransformerNet. {received}")
    if not path.is_file():
        raise WeightsError(f"Model file not found. Check the path. {received}")
    if path.suffix != ".keras":
        raise WeightsError(f"Model file must be a .keras archive (keras.Model.save). {received}")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001 - a corrupt archive raises many kinds of errors.
        detail = " ".join(str(error).split())[:200]
        raise WeightsError(f"Model file cannot be loaded, it is corrupt or not a Keras model "
                           f"({type(error).__name__}: {detail}). {received}") from None
    if not isinstance(model, TransformerNet):
        raise WeightsError(f"Model file holds a {type(model).__name__}, not an nst_tf TransformerNet. "
                           f"{received}")
    return model if dtype is None else with_dtype_policy(model, dtype)


def _as_batch(image):
    array = tf.convert_to_tensor(image, dtype=tf.float32)
    if array.shape.rank == 3:
        array = array[None]
    if array.shape.rank != 4 or array.shape[-1] != 3:
        raise ImageError(f"Expected images of shape [B, H, W, 3] or [H, W, 3]. Received: shape={tuple(array.shape)}")
    if min(array.shape[1], array.shape[2]) < MIN_INPUT_SIZE:
        raise ImageError(f"Image is too small for the transformer network: sides must be at least "
                         f"{MIN_INPUT_SIZE} pixels. Received: shape={tuple(array.shape)}")
    return array


def _forward(model, precision):
    """What runs the network: the cached compiled graph of a TransformerNet, else the callable itself."""
    if isinstance(model, TransformerNet):
        return inference_graph(model, _compute_dtype(model, precision))
    if precision is not None:
        raise ConfigError(f"`precision` applies to TransformerNet models only; this network runs in the precision "
                          f"it was exported with. Received: precision={precision!r}, model of type "
                          f"{type(model).__name__}")
    return model


def _compute_dtype(model, precision):
    if precision is None:
        return None
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"`precision` must be one of {', '.join(INFERENCE_PRECISIONS)} or None (the model's). "
                          f"Received: precision={precision!r}")
    return precision


def _styled(forward, style):
    """`forward` with the style selection bound (a multi-style network), or as is."""
    if style is None:
        return forward
    return functools.partial(forward, style=style)


def stylize_image(model, image, precision=None, style=None):
    """Stylizes whole images in one forward pass.

    A :class:`TransformerNet` runs through its cached compiled inference graph
    (:func:`nst_tf.inference.inference_graph`): the same result as ``model(image)``
    up to float rounding, and faster (BENCHMARKS.md, ``fast-inference``).  The graph is traced once per
    model and precision; the first call (and the first at a new image shape) also
    pays for TensorFlow's graph optimization and oneDNN set-up, about 1-2 s.

    Args:
        model: TransformerNet, or any callable with the same pixel contract (e.g.
            :class:`SavedModelStylizer`), called as is.
        image: array-like ``[B, H, W, 3]`` or ``[H, W, 3]``, RGB in [0, 255].
        precision: None (the model's compute dtype), ``"float32"`` or ``"bfloat16"``
            (convolutions in bfloat16, normalization statistics and output float32;
            faster on CPUs with AVX512_BF16, pixels within a few levels).
        style: multi-style networks only: float ``[N]`` or ``[B, N]`` blend weights
            (:meth:`TransformerNet.style_weights`) or int ``[B]`` style indices.

    Returns:
        np.ndarray float32 ``[B, H, W, 3]`` (a batch of 1 for a single image), in [0, 255].

    Raises:
        ImageError: wrong shape, or a side below ``MIN_INPUT_SIZE`` pixels.
        ConfigError: an unknown `precision`, or one given for a model that is not a TransformerNet.
    """
    forward = _styled(_forward(model, precision), style)
    return np.asarray(forward(_as_batch(image)), dtype=np.float32)


def _ramp(length, overlap, at_start, at_end):
    """1-D blending weights: a linear ramp over ``overlap`` pixels at inner tile edges."""
    weights = np.ones(length, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap  # > 0, so weights never vanish.
        if not at_start:
            weights[:overlap] = np.minimum(weights[:overlap], ramp)
        if not at_end:
            weights[-overlap:] = np.minimum(weights[-overlap:], ramp[::-1])
    return weights


def _starts(size, tile, stride):
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def stylize_tiled(model, image, tile=512, overlap=32, thumbnail_size=None, precision=None, style=None):
    """Stylizes one large image tile by tile, with seamless blending.

    Every tile is normalized with the instance-norm statistics of a thumbnail of the
    whole image (Chen et al. 2022, "thumbnail instance normalization"), so tiles
    agree in colour and contrast; without that each tile would be normalized on its
    own and show as a patch.  Tiles overlap by at least `overlap` pixels and are
    blended with linear ramp weights that sum to one.  The image is first
    reflection-padded to a multiple of 4 exactly as :class:`TransformerNet` pads it,
    and tiles start at multiples of 4, so with exact statistics (``thumbnail_size``
    >= the image's longest side) the result equals :func:`stylize_image` wherever a
    pixel is farther than the network's receptive field radius (54 px; measured) from an
    inner tile edge.  Peak memory is that of one tile's forward pass plus two
    image-sized float32 accumulators.  The thumbnail and the tiles run through the
    same compiled graph as :func:`stylize_image`, so both round alike.

    Args:
        model: TransformerNet.
        image: array-like ``[1, H, W, 3]`` or ``[H, W, 3]``, RGB in [0, 255].
        tile: int. Tile side, pixels, rounded down to a multiple of 4; >= 8. Defaults to 512.
        overlap: int. Minimum overlap of neighbouring tiles, pixels (the blending
            ramp's width). Defaults to 32.
        thumbnail_size: int or None. Longest side of the thumbnail whose statistics
            normalize all tiles; None uses `tile`. An image no larger is used as is.
        precision: None, ``"float32"`` or ``"bfloat16"``, as in :func:`stylize_image`.
        style: multi-style networks only: blend weights or indices, as in :func:`stylize_image`.

    Returns:
        np.ndarray float32 ``[1, H, W, 3]``, RGB in [0, 255].

    Raises:
        ConfigError: `tile` < 2 * `overlap`, `tile` < 8, `overlap` < 0, a bad `thumbnail_size`
            or `precision`.
        ImageError: wrong shape, a batch of more than one, or a side below ``MIN_INPUT_SIZE``.
    """
    check_int("tile", tile, MIN_ALIGNED_SIZE)
    check_int("overlap", overlap, 0)
    if tile < 2 * overlap:
        raise ConfigError(f"`tile` must be at least twice `overlap`, or the blending ramps of opposite tile "
                          f"edges would cross. Received: tile={tile}, overlap={overlap}")
    thumbnail_size = tile if thumbnail_size is None else thumbnail_size
    check_int("thumbnail_size", thumbnail_size, 8)
    forward = _styled(_forward(model, precision), style)
    batch = _as_batch(image)
    if batch.shape[0] != 1:
        raise ImageError(f"stylize_tiled takes one image. Received: shape={tuple(batch.shape)}")
    height, width = int(batch.shape[1]), int(batch.shape[2])
    if height <= tile and width <= tile:
        return np.asarray(forward(batch), dtype=np.float32)

    scale = thumbnail_size / max(height, width)
    thumbnail = batch if scale >= 1 else tf.image.resize(
        batch, (max(MIN_INPUT_SIZE, round(height * scale)), max(MIN_INPUT_SIZE, round(width * scale))),
        method="area")
    _, statistics = forward(thumbnail, return_statistics=True)

    (top, bottom), (left, right) = [[int(p) for p in pair] for pair in align_padding(height, width)]
    padded = tf.pad(batch, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="REFLECT").numpy()
    full_h, full_w = padded.shape[1:3]
    tile = tile // SIZE_ALIGNMENT * SIZE_ALIGNMENT
    stride = max(SIZE_ALIGNMENT, (tile - overlap) // SIZE_ALIGNMENT * SIZE_ALIGNMENT)
    tile_h, tile_w = min(tile, full_h), min(tile, full_w)
    output = np.zeros((full_h, full_w, 3), np.float32)
    total = np.zeros((full_h, full_w, 1), np.float32)
    for y in _starts(full_h, tile_h, stride):
        wy = _ramp(tile_h, overlap, y == 0, y + tile_h == full_h)
        for x in _starts(full_w, tile_w, stride):
            wx = _ramp(tile_w, overlap, x == 0, x + tile_w == full_w)
            window = padded[:, y:y + tile_h, x:x + tile_w]
            result = np.asarray(forward(window, statistics=statistics))[0]
            weight = (wy[:, None] * wx[None, :])[..., None]
            output[y:y + tile_h, x:x + tile_w] += result * weight
            total[y:y + tile_h, x:x + tile_w] += weight
    output = output / total
    return np.clip(output[None, top:top + height, left:left + width], 0, 255)


class SavedModelStylizer:
    """A TF Serving version folder used like a TransformerNet: ``stylizer(images) -> images``.

    Calls the SavedModel's ``serving_default`` signature (uint8 in and out, see
    :mod:`nst_tf.export`), so pixels are rounded to uint8 on the way in and out.  A
    multi-style SavedModel runs its ``stylize_blend`` signature; its style names come
    from its ``style_names`` signature.

    Args:
        path: a SavedModel folder (``saved_models/<model>/<version>/``).

    Attributes:
        style_names: list of str, or None for a single-style network.

    Raises:
        WeightsError: not a SavedModel, or without the nst_tf serving signature.
    """

    def __init__(self, path):
        received = f"Received: path='{path}'"
        try:
            loaded = tf.saved_model.load(str(path))
            self._signature = loaded.signatures[signatures.SIGNATURE_IMAGES]
        except (OSError, KeyError, ValueError) as error:
            raise WeightsError(f"Folder is not an nst_tf SavedModel with a {signatures.SIGNATURE_IMAGES!r} signature "
                               f"({type(error).__name__}). Pass a version folder written by scripts/export.py. "
                               f"{received}") from None
        self._loaded = loaded  # Keeps the signature's variables alive.
        self._input, self._output = signatures.INPUT_IMAGES, signatures.OUTPUT_IMAGES
        self.style_names = None
        if signatures.SIGNATURE_BLEND in loaded.signatures:
            self._signature = loaded.signatures[signatures.SIGNATURE_BLEND]
            count = self._signature.structured_input_signature[1][signatures.INPUT_STYLE_WEIGHTS].shape[-1]
            names = loaded.signatures[signatures.SIGNATURE_STYLE_NAMES](
                **{signatures.INPUT_STYLE_INDEX: tf.range(count)})[signatures.OUTPUT_STYLE_NAMES]
            self.style_names = [name.decode() for name in names.numpy()]

    @property
    def num_styles(self):
        """Number of styles; None for a single-style network."""
        return None if self.style_names is None else len(self.style_names)

    def style_weights(self, style=None, strength=1.0):
        """Blend weights for a style selection, as :meth:`TransformerNet.style_weights`."""
        return style_selection_weights(self.style_names, style, strength)

    def __call__(self, images, training=False, style=None):
        pixels = round_to_uint8(images)
        inputs = {self._input: pixels}
        if self.style_names is not None:
            if style is None:
                raise ConfigError(f"This network has {self.num_styles} styles ({', '.join(self.style_names)}); "
                                  f"pass `style`. Received: style=None")
            inputs[signatures.INPUT_STYLE_WEIGHTS] = style_matrix(style, self.num_styles, tf.shape(pixels)[0])
        elif style is not None:
            raise ConfigError(f"This network has a single style; do not pass `style`. Received: style={style!r}")
        return tf.cast(self._signature(**inputs)[self._output], tf.float32)


def load_stylizer(path):
    """Loads a style network for inference: a ``.keras`` TransformerNet or a SavedModel folder.

    Args:
        path: ``.keras`` file (:func:`load_transformer`) or SavedModel version folder
            (:class:`SavedModelStylizer`).

    Returns:
        A callable ``images [B, H, W, 3] float32 in [0, 255] -> same``, usable with
        :func:`stylize_image` and :func:`stylize_tiled`.

    Raises:
        WeightsError: missing, corrupt, or not a style network.
    """
    path = pathlib.Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return SavedModelStylizer(path)
    return load_transformer(path)
