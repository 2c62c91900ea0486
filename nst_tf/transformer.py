"""TransformerNet: the feed-forward style transfer network, and inference helpers.

Architecture of Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", ECCV 2016 (supplementary, Table 1), with instance
normalization (Ulyanov et al. 2016) and resize-convolution upsampling (Odena et al.
2016), as in pytorch/examples fast_neural_style.

Inference helpers: :func:`load_transformer` (``.keras`` files with one-line errors),
:func:`stylize_image` (whole images) and :func:`stylize_tiled` (large images in
bounded memory, tiles normalized with the statistics of a thumbnail: Chen et al.,
"Towards Ultra-Resolution Neural Style Transfer via Thumbnail Instance
Normalization", AAAI 2022).
"""

import functools
import json
import math
import pathlib

import keras
import numpy as np
import tensorflow as tf

from nst_tf import signatures
from nst_tf.errors import ConfigError, ImageError, WeightsError
from nst_tf.layers import ConvBlock, ResidualBlock, UpsampleConv2D

MIN_INPUT_SIZE = 4
"""Smallest height or width, pixels, that :class:`TransformerNet` accepts."""
INFERENCE_PRECISIONS = ("float32", "bfloat16")
"""Precisions :func:`stylize_image` and :func:`stylize_tiled` can run a TransformerNet in."""

_ALIGN = 4  # Two stride-2 convolutions: sizes that are multiples of 4 come back exactly.
_MIN_ALIGNED = 8  # The bottleneck (1/4 size) must be >= 2 pixels for its reflection padding.


def align_padding(height, width):
    """Reflection padding ``[[top, bottom], [left, right]]`` to a multiple of 4 (at least 8)."""
    pads = []
    for size in (height, width):
        total = tf.maximum(_MIN_ALIGNED, (size + _ALIGN - 1) // _ALIGN * _ALIGN) - size
        pads.append([total // 2, total - total // 2])
    return pads




PHOTO_STYLE = "photo"
"""Name of the style slot trained with content loss only: the identity of a multi-style network."""
MAX_STRENGTH = 2.0
"""Largest style strength :meth:`TransformerNet.style_weights` accepts."""


def _style_weights(names, style, strength):
    if names is None:
        raise ConfigError(f"This network has a single style: it takes no style selection or strength. "
                          f"Received: style={style!r}, strength={strength!r}")
    count = len(names)
    if isinstance(style, str):
        style = {style: 1.0}
    if isinstance(style, (int, np.integer)) and not isinstance(style, bool):
        if not 0 <= style < count:
            raise ConfigError(f"Style index must be in [0, {count}). Received: style={style}")
        style = {names[style]: 1.0}
    if isinstance(style, dict):
        unknown = [name for name in style if name not in names]
        if unknown:
            raise ConfigError(f"Unknown style name {unknown[0]!r}; this network has: {', '.join(names)}. "
                              f"Received: style={style!r}")
        style = [float(style.get(name, 0.0)) for name in names]
    weights = np.asarray(style, np.float64).reshape(-1) if style is not None else None
    if weights is None or weights.shape != (count,):
        raise ConfigError(f"Style selection must be a name, an index, a {{name: weight}} dict or {count} weights. "
                          f"Received: style={style!r}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ConfigError(f"Style weights must be finite, >= 0 and not all zero. Received: weights={weights.tolist()}")
    weights = weights / weights.sum()
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (
            math.isfinite(strength) and 0 <= strength <= MAX_STRENGTH):
        raise ConfigError(f"Style strength must be a number in [0, {MAX_STRENGTH}]. Received: strength={strength!r}")
    if strength != 1:
        if PHOTO_STYLE not in names:
            raise ConfigError(f"This network has no {PHOTO_STYLE!r} style to blend toward, so its strength is fixed "
                              f"at 1. Received: strength={strength}")
        photo = np.zeros(count)
        photo[names.index(PHOTO_STYLE)] = 1.0
        weights = strength * weights + (1.0 - strength) * photo
    return weights


def style_matrix(style, num_styles, batch):
    """Blend weights ``[B, N]`` float32 from a style call argument.

    Args:
        style: int tensor ``[B]`` (or scalar) of style indices, or float tensor ``[B, N]``
            or ``[N]`` of blend weights (used as given; see :meth:`TransformerNet.style_weights`).
        num_styles: int, N.
        batch: int or scalar tensor, B.

    Returns:
        float32 tensor ``[B, N]``.
    """
    style = tf.convert_to_tensor(style)
    if style.dtype.is_integer:
        style = tf.one_hot(style, num_styles, dtype=tf.float32)
    style = tf.cast(style, tf.float32)
    if style.shape.rank == 1:
        style = style[None]
    return tf.broadcast_to(style, [batch, num_styles])


@keras.saving.register_keras_serializable(package="nst_tf")
class TransformerNet(keras.Model):
    """Image transformation network of Johnson et al. 2016 with instance normalization.

    ``9x9/32 -> 3x3/64 s2 -> 3x3/128 s2 -> 5 residual blocks of 128 -> upsample +
    3x3/64 -> upsample + 3x3/32 -> 9x9/3``; reflection padding; instance
    normalization after every convolution except the last, followed by ReLU except
    at the end of a residual branch (Johnson 2016, supplementary).

    Input ``[0, 255]`` is mapped to ``[-1, 1]``; the output is ``127.5 * (tanh(z) + 1)``,
    in ``[0, 255]`` by construction (no clipping, whose zero gradient would stall
    saturated pixels; Johnson used a scaled tanh too).  Any size from
    ``MIN_INPUT_SIZE`` works: the input is reflection-padded to a multiple of 4
    (at least 8), which the two stride-2 convolutions and two 2x upsamplings map
    back exactly, and the output is cropped back to the input's size.

    With `style_names`, the network is a multi-style network (Dumoulin, Shlens,
    Kudlur, "A Learned Representation for Artistic Style", ICLR 2017): every
    instance normalization becomes a :class:`~nst_tf.layers.ConditionalInstanceNormalization`
    with one ``gamma``/``beta`` row per style, and the convolutions are shared.  The
    call then takes a style selection: integer indices, or blend weights over the
    styles (blending mixes ``gamma`` and ``beta``, Dumoulin sec. 3).  A style named
    ``"photo"`` (:data:`PHOTO_STYLE`), trained with content loss only, is the
    network's identity; :meth:`style_weights` blends toward it to weaken a style.

    Args:
        filters: sequence of 3 int. Channels of the three downsampling convolutions
            at width 1; the upsampling path mirrors them. Defaults to ``(32, 64, 128)``.
        num_residual_blocks: int >= 0. Defaults to 5.
        width_multiplier: float > 0. Scales every channel count (Johnson's half-width
            network is 0.5; Magenta's ``alpha``); counts round to at least 1.
            Defaults to 1.0.
        style_names: sequence of unique non-empty str, or None (a single-style network
            with plain instance normalization). Defaults to None.
        metadata: JSON-serializable dict saved with the model (the training
            configuration, per-style loss weights, losses). Defaults to None (empty).
        **kwargs: ``keras.Model`` arguments (``name``; ``dtype``: a dtype policy such as
            ``"mixed_bfloat16"``, the output stays float32).

    Call arguments:
        images: float tensor ``[B, H, W, 3]``, RGB in [0, 255], H and W >= 4.
        style: multi-style networks only: int tensor ``[B]`` of style indices, or float
            tensor ``[B, N]`` or ``[N]`` of blend weights (see :meth:`style_weights`).
        statistics: optional nested list of instance-norm ``(mean, variance)`` as
            returned with ``return_statistics=True``; used instead of the image's own.
        return_statistics: bool. Also return the statistics used.

    Returns:
        float32 tensor ``[B, H, W, 3]``, RGB in [0, 255], or ``(images, statistics)``.

    Raises:
        ConfigError: `filters` is not three positive ints, `num_residual_blocks` < 0,
            a bad `width_multiplier` or `style_names`; at call time, a multi-style
            network called without `style`.
    """

    def __init__(self, filters=(32, 64, 128), num_residual_blocks=5, width_multiplier=1.0, style_names=None,
                 metadata=None, **kwargs):
        super().__init__(**kwargs)
        filters = tuple(filters)
        if len(filters) != 3 or not all(isinstance(f, int) and f > 0 for f in filters):
            raise ConfigError(f"`filters` must be three positive ints. Received: filters={filters!r}")
        if not isinstance(num_residual_blocks, int) or num_residual_blocks < 0:
            raise ConfigError(f"`num_residual_blocks` must be an int >= 0. "
                              f"Received: num_residual_blocks={num_residual_blocks!r}")
        if (isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float))
                or not math.isfinite(width_multiplier) or width_multiplier <= 0):
            raise ConfigError(f"`width_multiplier` must be a number > 0. Received: width_multiplier={width_multiplier!r}")
        if style_names is not None:
            style_names = [str(name) for name in style_names]
            if not style_names or any(not name or "," in name or ":" in name for name in style_names) or len(
                    set(style_names)) != len(style_names):
                raise ConfigError(f"`style_names` must be unique non-empty names without ',' or ':'. "
                                  f"Received: style_names={style_names!r}")
        self.filters = filters
        self.num_residual_blocks = num_residual_blocks
        self.width_multiplier = float(width_multiplier)
        self.style_names = style_names
        self.metadata = metadata
        self.channels = tuple(max(1, round(f * self.width_multiplier)) for f in filters)
        styles = self.num_styles
        policy = self.dtype_policy
        f1, f2, f3 = self.channels
        self.blocks = [
            ConvBlock(f1, 9, num_styles=styles, dtype=policy, name="conv1"),
            ConvBlock(f2, 3, strides=2, num_styles=styles, dtype=policy, name="conv2"),
            ConvBlock(f3, 3, strides=2, num_styles=styles, dtype=policy, name="conv3"),
            *[ResidualBlock(f3, num_styles=styles, dtype=policy, name=f"res{i + 1}")
              for i in range(num_residual_blocks)],
            UpsampleConv2D(f2, num_styles=styles, dtype=policy, name="up1"),
            UpsampleConv2D(f1, num_styles=styles, dtype=policy, name="up2"),
        ]
        self.head = ConvBlock(3, 9, normalize=False, activation=None, dtype=policy, name="head")

    @property
    def metadata(self):
        """JSON-serializable dict saved with the model (a copy; assign a new dict to change it)."""
        return json.loads(self._metadata_json)

    @metadata.setter
    def metadata(self, value):
        # Kept as JSON text: Keras would wrap a dict attribute in a tracking container.
        self._metadata_json = json.dumps(dict(value or {}))

    @property
    def num_styles(self):
        """Number of styles of a multi-style network; None for a single-style network."""
        return None if self.style_names is None else len(self.style_names)

    def conv_blocks(self):
        """The normalized convolutions of every block, in the order the network applies them.

        Returns:
            list of ``(block, convs)``, one per entry of ``blocks``: the block and its
            normalized :class:`~nst_tf.layers.ConvBlock` layers -- ``[block.block1,
            block.block2]`` of a ResidualBlock, ``[block.block]`` of an UpsampleConv2D,
            ``[block]`` of a ConvBlock.  The head is not among them.
        """
        return [(block, [block.block1, block.block2] if isinstance(block, ResidualBlock) else (
            [block.block] if isinstance(block, UpsampleConv2D) else [block])) for block in self.blocks]

    def norm_layers(self):
        """The instance normalization layers in the order the network applies them.

        Returns:
            list of ``(ConvBlock, InstanceNormalization)`` pairs, one per normalized
            convolution (15 for 5 residual blocks); the head has none.
        """
        return [(conv, conv.norm) for _, convs in self.conv_blocks() for conv in convs]

    def style_weights(self, style=None, strength=1.0):
        """Blend weights over this network's styles for a user's style selection.

        Args:
            style: a style name (str), an index (int), a dict ``{name: weight}``, or a
                sequence of N weights. Weights must be finite, >= 0 and not all zero;
                they are normalized to sum to one.
            strength: float >= 0. 1 is the style as trained; below 1 blends the
                normalization parameters toward the ``"photo"`` style (0 is the photo),
                above 1 extrapolates away from it (up to :data:`MAX_STRENGTH`).

        Returns:
            np.ndarray float32 ``[N]``.

        Raises:
            ConfigError: a single-style network, an unknown name or index, bad weights,
                or a strength other than 1 on a network without a ``"photo"`` style.
        """
        return np.asarray(_style_weights(self.style_names, style, strength), np.float32)

    def build(self, input_shape):
        if self.built:
            return
        shape = tuple(input_shape)
        for block in self.blocks + [self.head]:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    def selection(self, style, batch):
        """Float32 ``[B, N]`` blend weights from a ``style`` call argument (None if single-style)."""
        if self.style_names is None:
            if style is not None:
                raise ConfigError(f"This network has a single style; do not pass `style`. Received: style={style!r}")
            return None
        if style is None:
            raise ConfigError(f"This network has {self.num_styles} styles ({', '.join(self.style_names)}); pass "
                              f"`style` (indices [B] or blend weights [B, {self.num_styles}]). Received: style=None")
        return style_matrix(style, self.num_styles, batch)

    def call(self, images, style=None, statistics=None, return_statistics=False):
        images = tf.convert_to_tensor(images)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        weights = self.selection(style, tf.shape(images)[0])
        conditional = {} if weights is None else {"style_weights": weights}
        (top, bottom), (left, right) = align_padding(height, width)
        x = tf.cast(images, tf.float32) / 127.5 - 1.0
        x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="REFLECT")
        x = tf.cast(x, self.compute_dtype)
        used = []
        for index, block in enumerate(self.blocks):
            given = None if statistics is None else statistics[index]
            x, stats = block(x, statistics=given, return_statistics=True, **conditional)
            used.append(stats)
        x = tf.cast(self.head(x), tf.float32)  # Output activation in float32 under mixed precision.
        x = 127.5 * (tf.tanh(x[:, top:top + height, left:left + width]) + 1.0)
        return (x, used) if return_statistics else x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (3,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=list(self.filters), num_residual_blocks=self.num_residual_blocks,
                      width_multiplier=self.width_multiplier, style_names=self.style_names, metadata=self.metadata)
        return config


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
        kind = "a SavedModel folder (for serving)" if (path / "saved_model.pb").exists() else "a folder"
        raise WeightsError(f"Expected a .keras model file but got {kind}. Pass the .keras file of a "
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
    if dtype is not None and keras.dtype_policies.get(dtype).name != model.dtype_policy.name:
        config = {**model.get_config(), "dtype": dtype}
        recast = TransformerNet.from_config(config)
        recast.build((None, None, None, 3))
        recast.set_weights(model.get_weights())
        model = recast
    return model


def with_added_style(model, name):
    """A copy of a multi-style network with one more style (Dumoulin et al. 2017, sec. 4).

    Every weight is copied; the new style's ``gamma`` and ``beta`` rows start as the
    mean of the existing rows, so training only those rows (the convolutions frozen)
    adds the style without changing what the network does for the others.

    Args:
        model: TransformerNet with `style_names`, built.
        name: str. The new style's name; not already present.

    Returns:
        TransformerNet with ``style_names + [name]`` and the same dtype policy and metadata.

    Raises:
        ConfigError: `model` is single-style, or `name` is taken or invalid.
    """
    if model.style_names is None:
        raise ConfigError("A style can be added to a multi-style network only (one trained with several --style "
                          "images or --photo-style). Received: a single-style network")
    if name in model.style_names:
        raise ConfigError(f"The network already has a style named {name!r}; choose another name with "
                          f"--style-names. Received: name={name!r}")
    config = {**model.get_config(), "style_names": list(model.style_names) + [name]}
    extended = TransformerNet.from_config(config)
    extended.build((None, None, None, 3))
    for target, source in zip(extended.weights, model.weights, strict=True):
        value = source.numpy()
        if tuple(target.shape) != value.shape:  # A gamma or beta table: one more row.
            value = np.concatenate([value, value.mean(axis=0, keepdims=True)])
        target.assign(value)
    return extended


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
        from nst_tf.inference import inference_graph

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
    up to float rounding, about 1.5x faster in float32.  The graph is traced once per
    model and precision; the first call (and the first at a new image shape) also
    pays for TensorFlow's graph optimization and oneDNN set-up, about 1-2 s.

    Args:
        model: TransformerNet, or any callable with the same pixel contract (e.g.
            :class:`SavedModelStylizer`), called as is.
        image: array-like ``[B, H, W, 3]`` or ``[H, W, 3]``, RGB in [0, 255].
        precision: None (the model's compute dtype), ``"float32"`` or ``"bfloat16"``
            (convolutions in bfloat16, normalization statistics and output float32;
            about 2x faster on CPUs with AVX512_BF16, pixels within a few levels).
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
    for name, value, minimum in (("tile", tile, _MIN_ALIGNED), ("overlap", overlap, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ConfigError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}")
    if tile < 2 * overlap:
        raise ConfigError(f"`tile` must be at least twice `overlap`, or the blending ramps of opposite tile "
                          f"edges would cross. Received: tile={tile}, overlap={overlap}")
    thumbnail_size = tile if thumbnail_size is None else thumbnail_size
    if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, (int, np.integer)) or thumbnail_size < 8:
        raise ConfigError(f"`thumbnail_size` must be an int >= 8. Received: thumbnail_size={thumbnail_size!r}")
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
    tile = tile // _ALIGN * _ALIGN
    stride = max(_ALIGN, (tile - overlap) // _ALIGN * _ALIGN)
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
        return np.asarray(_style_weights(self.style_names, style, strength), np.float32)

    def __call__(self, images, training=False, style=None):
        pixels = tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)
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
