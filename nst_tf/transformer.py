"""TransformerNet: the feed-forward style transfer network, one style or many.

Architecture of Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style
Transfer and Super-Resolution", ECCV 2016 (supplementary, Table 1), with instance
normalization (Ulyanov et al. 2016) and resize-convolution upsampling (Odena et al.
2016), as in pytorch/examples fast_neural_style.  A multi-style network uses
conditional instance normalization (Dumoulin, Shlens, Kudlur, "A Learned
Representation for Artistic Style", ICLR 2017), and :func:`with_added_style` grows
one by a style (their sec. 4).

This module holds the model and what defines it (size alignment, style selection);
:mod:`nst_tf.inference` compiles its forward pass, :mod:`nst_tf.stylizer` applies a
trained network to images, :mod:`nst_tf.export` writes it for TF Serving.
"""

import json
import math

import keras
import numpy as np
import tensorflow as tf

from nst_tf.config import MIN_ALIGNED_SIZE, SIZE_ALIGNMENT, style_selection_weights, transformer_channels
from nst_tf.errors import ConfigError
from nst_tf.layers import ConvBlock, ResidualBlock, UpsampleConv2D, with_static_channels

MIN_INPUT_SIZE = 4
"""Smallest height or width, pixels, that :class:`TransformerNet` accepts."""

ENCODER_BLOCKS = 3
"""Blocks of :class:`TransformerNet` before its residual blocks (``conv1``-``conv3``, the encoder)."""


def align_padding(height, width):
    """Reflection padding ``[[top, bottom], [left, right]]`` to :func:`nst_tf.config.aligned_size`, for
    size tensors (a multiple of 4, at least 8)."""
    pads = []
    for size in (height, width):
        total = tf.maximum(MIN_ALIGNED_SIZE, (size + SIZE_ALIGNMENT - 1) // SIZE_ALIGNMENT * SIZE_ALIGNMENT) - size
        pads.append([total // 2, total - total // 2])
    return pads


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


def style_argument(style_names, style, batch):
    """The blend weights of a network's ``style`` call argument, checked against its styles.

    Args:
        style_names: list of str, or None for a single-style network.
        style: None, or what :func:`style_matrix` takes.
        batch: int or scalar tensor, B.

    Returns:
        float32 tensor ``[B, N]``; None for a single-style network.

    Raises:
        ConfigError: a style for a single-style network, or none for a multi-style one.
    """
    if style_names is None:
        if style is not None:
            raise ConfigError(f"This network has a single style; do not pass `style`. Received: style={style!r}")
        return None
    if style is None:
        raise ConfigError(f"This network has {len(style_names)} styles ({', '.join(style_names)}); pass `style` "
                          f"(indices [B] or blend weights [B, {len(style_names)}]). Received: style=None")
    return style_matrix(style, len(style_names), batch)


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
    ``"photo"`` (:data:`nst_tf.config.PHOTO_STYLE`), trained with content loss only, is the
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
        return_logits: bool. Also return the output's pre-activation ``z`` (float32
            ``[B, H, W, 3]``, ``images = 127.5 * (tanh(z) + 1)``), which training
            keeps out of tanh's flat tails (:class:`nst_tf.training.FastStyleTrainer`).
        return_activations: bool. Also return each block's output, in the order of
            ``blocks`` (list of tensors ``[B, h, w, c]`` in the compute dtype, at the
            padded size), which training keeps free of droplets
            (:func:`nst_tf.losses.droplet_loss`).

    Returns:
        float32 tensor ``[B, H, W, 3]``, RGB in [0, 255]; with `return_logits` or
        `return_activations` a tuple ``(images, logits, activations)`` of those asked
        for, in that order; with `return_statistics` the statistics come last.

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
        self.channels = transformer_channels(filters, self.width_multiplier)
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
                normalization parameters toward the ``"photo"`` style (0 is that style:
                the network's rendering of the photo, not the photo itself),
                above 1 extrapolates away from it (up to :data:`nst_tf.config.MAX_STRENGTH`).

        Returns:
            np.ndarray float32 ``[N]``.

        Raises:
            ConfigError: a single-style network, an unknown name or index, bad weights,
                or a strength other than 1 on a network without a ``"photo"`` style.
        """
        return style_selection_weights(self.style_names, style, strength)

    def build(self, input_shape):
        if self.built:
            return
        shape = tuple(input_shape)
        for block in self.blocks + [self.head]:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    def selection(self, style, batch):
        """Float32 ``[B, N]`` blend weights from a ``style`` call argument (None if single-style)."""
        return style_argument(self.style_names, style, batch)

    def call(self, images, style=None, statistics=None, return_statistics=False, return_logits=False,
             return_activations=False):
        images = tf.convert_to_tensor(images)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        weights = self.selection(style, tf.shape(images)[0])
        conditional = {} if weights is None else {"style_weights": weights}
        (top, bottom), (left, right) = align_padding(height, width)
        x = tf.cast(images, tf.float32) / 127.5 - 1.0
        x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="REFLECT")
        x = with_static_channels(tf.cast(x, self.compute_dtype), 3)  # Padding amounts computed from the size.
        used, activations = [], []
        for index, block in enumerate(self.blocks):
            given = None if statistics is None else statistics[index]
            x, stats = block(x, statistics=given, return_statistics=True, **conditional)
            used.append(stats)
            activations.append(x)
        logits = tf.cast(self.head(x), tf.float32)[:, top:top + height, left:left + width]  # float32 tanh.
        outputs = (127.5 * (tf.tanh(logits) + 1.0),) + ((logits,) if return_logits else ()) + (
            (activations,) if return_activations else ()) + ((used,) if return_statistics else ())
        return outputs if len(outputs) > 1 else outputs[0]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (3,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=list(self.filters), num_residual_blocks=self.num_residual_blocks,
                      width_multiplier=self.width_multiplier, style_names=self.style_names, metadata=self.metadata)
        return config


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


def with_dtype_policy(model, dtype):
    """The network under another Keras dtype policy, with the same weights.

    A mixed policy (``"mixed_bfloat16"``) keeps float32 variables and computes in
    bfloat16; ``"float32"`` is the policy a network is saved in and TFLite converts.

    Args:
        model: TransformerNet, built.
        dtype: str or ``keras.DTypePolicy``, a policy name Keras knows (``"float32"``,
            ``"mixed_bfloat16"``, ``"mixed_float16"``, ...).

    Returns:
        `model` itself when its policy already has that name; else a new, built
        TransformerNet of the same config and metadata whose variables hold `model`'s
        weights (cast to the policy's variable dtype).

    Raises:
        ValueError: `dtype` is not a dtype policy Keras knows (``keras.dtype_policies.get``).
    """
    policy = keras.dtype_policies.get(dtype)
    if policy.name == model.dtype_policy.name:
        return model
    recast = TransformerNet.from_config({**model.get_config(), "dtype": policy.name})
    recast.build((None, None, None, 3))
    recast.set_weights(model.get_weights())
    return recast
