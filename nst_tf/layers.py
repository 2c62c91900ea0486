"""Serializable Keras layers of the feed-forward transformer network.

Sources: Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time Style Transfer
and Super-Resolution", ECCV 2016 (supplementary, residual blocks); Ulyanov, Vedaldi,
Lempitsky, "Instance Normalization: The Missing Ingredient for Fast Stylization",
2016; Odena, Dumoulin, Olah, "Deconvolution and Checkerboard Artifacts", Distill
2016 (resize-convolution); Chen et al., "Towards Ultra-Resolution Neural Style
Transfer via Thumbnail Instance Normalization", AAAI 2022 (external statistics).

Every layer keeps its constructor arguments as attributes and returns them from
``get_config``; composite layers build their children in ``build`` so that
``keras.models.load_model`` restores weights without running the layer.

Instance normalization optionally uses *given* statistics instead of the input's
own: the tiled inference of :mod:`nst_tf.stylizer` normalizes every tile with
the statistics of the whole image (or its thumbnail), which is what makes tiles
agree.  The layers therefore accept ``statistics=`` and ``return_statistics=``
call arguments; with their defaults they are ordinary layers.
"""

import keras
import tensorflow as tf

from nst_tf.errors import ConfigError


def with_static_channels(x, channels):
    """`x` reshaped to its own shape with the channel count `channels` stated statically.

    TensorFlow's shape inference loses the channel count of a reflection padding whose
    amounts are computed from the input size, and of ``keras.layers.UpSampling2D``'s
    nearest-neighbour repeat; the TFLite converter lowers a convolution to its builtin
    ``CONV_2D`` only when the input channels are static (a dynamic count needs TF
    Select ops).  The reshape restates the count in the graph itself (``set_shape`` or
    ``tf.ensure_shape`` would not reach the converter, or not as a builtin op); it
    moves no data and changes no value.

    Args:
        x: tensor ``[B, H, W, C]`` with ``C == channels``.
        channels: int, C.

    Returns:
        `x`, shape ``[B, H, W, channels]``.
    """
    shape = tf.shape(x)
    return tf.reshape(x, tf.stack([-1, shape[1], shape[2], channels]))


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ConfigError(f"`{name}` must be a non-negative int or a pair of them. Received: {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="nst_tf")
class ReflectionPadding2D(keras.layers.Layer):
    """Pads height and width by reflecting the image at its border (no edge repeat).

    Reflection instead of zero padding keeps the borders of a stylized image free of
    dark frames (Johnson 2016, supplementary).

    Args:
        padding: int or pair of int ``(pad_h, pad_w)``, pixels added on each side.
            Each must be smaller than the input's height or width. Defaults to 1.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Call arguments:
        inputs: tensor ``[B, H, W, C]``.

    Returns:
        tensor ``[B, H + 2 * pad_h, W + 2 * pad_w, C]`` of the input dtype.

    Raises:
        ConfigError: `padding` is negative or not one or two ints.
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pair(padding, "padding")

    def call(self, inputs):
        pad_h, pad_w = self.padding
        return tf.pad(inputs, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        grow = lambda size, pad: None if size is None else size + 2 * pad  # noqa: E731
        return (input_shape[0], grow(input_shape[1], self.padding[0]), grow(input_shape[2], self.padding[1]),
                input_shape[3])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras.saving.register_keras_serializable(package="nst_tf")
class InstanceNormalization(keras.layers.Layer):
    """Instance normalization (Ulyanov et al. 2016): per-image, per-channel statistics.

    ``y = gamma * (x - mean_hw(x)) / sqrt(var_hw(x) + epsilon) + beta``.
    Equivalent to ``keras.layers.GroupNormalization(groups=-1)``; its own code because
    the tiled inference needs to pass statistics in (``statistics=``), which
    GroupNormalization cannot.  Moments are computed in float32 also under a mixed
    precision policy (bfloat16 variance of 128x128 maps is too coarse).

    Args:
        epsilon: float. Added to the variance. Defaults to 1e-5 (as in PyTorch's
            InstanceNorm2d used by the reference implementations).
        center: bool. Learn the offset ``beta``. Defaults to True.
        scale: bool. Learn the scale ``gamma``. Defaults to True.
        **kwargs: ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: tensor ``[B, H, W, C]``.
        statistics: optional pair ``(mean, variance)`` of float32 ``[B or 1, 1, 1, C]``
            used instead of the input's moments.
        return_statistics: bool. Also return the ``(mean, variance)`` used.

    Returns:
        tensor ``[B, H, W, C]`` of the compute dtype, or ``(tensor, (mean, variance))``.
    """

    def __init__(self, epsilon=1e-5, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.center = center
        self.scale = scale

    def build(self, input_shape):
        if self.built:
            return
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma") if self.scale else None
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta") if self.center else None

    def call(self, inputs, statistics=None, return_statistics=False):
        x = tf.cast(inputs, tf.float32)
        if statistics is None:
            statistics = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        mean, variance = statistics
        y = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            y = y * tf.cast(self.gamma, tf.float32)
        if self.beta is not None:
            y = y + tf.cast(self.beta, tf.float32)
        y = tf.cast(y, self.compute_dtype)
        return (y, (mean, variance)) if return_statistics else y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "center": self.center, "scale": self.scale}


def _check_num_styles(num_styles):
    if num_styles is not None and (isinstance(num_styles, bool) or not isinstance(num_styles, int) or num_styles < 1):
        raise ConfigError(f"`num_styles` must be None or an int >= 1. Received: num_styles={num_styles!r}")
    return num_styles


@keras.saving.register_keras_serializable(package="nst_tf")
class ConditionalInstanceNormalization(InstanceNormalization):
    """Conditional instance normalization (Dumoulin, Shlens, Kudlur, ICLR 2017, eq. 5).

    One ``gamma`` and ``beta`` per style, shape ``[num_styles, C]``; the image is
    normalized as in :class:`InstanceNormalization` and then scaled and shifted by
    ``style_weights @ gamma`` and ``style_weights @ beta``.  A one-hot row selects a
    style; a convex row blends styles in the normalization parameters, which is
    Dumoulin's sec. 3 blending (not a blend of output pixels).

    Args:
        num_styles: int >= 1. Rows of the ``gamma`` and ``beta`` tables.
        epsilon, center, scale: as in :class:`InstanceNormalization`.
        **kwargs: ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: tensor ``[B, H, W, C]``.
        style_weights: float tensor ``[B, num_styles]`` (or ``[1, num_styles]``,
            broadcast over the batch). Rows need not sum to one: the caller decides
            (sums other than one extrapolate).
        statistics, return_statistics: as in :class:`InstanceNormalization`.

    Returns:
        tensor ``[B, H, W, C]`` of the compute dtype, or ``(tensor, (mean, variance))``.

    Raises:
        ConfigError: `num_styles` is not an int >= 1.
    """

    def __init__(self, num_styles, epsilon=1e-5, center=True, scale=True, **kwargs):
        super().__init__(epsilon=epsilon, center=center, scale=scale, **kwargs)
        if _check_num_styles(num_styles) is None:
            raise ConfigError("`num_styles` must be an int >= 1. Received: num_styles=None")
        self.num_styles = num_styles

    def build(self, input_shape):
        if self.built:
            return
        shape = (self.num_styles, input_shape[-1])
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma") if self.scale else None
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta") if self.center else None

    def blended(self, style_weights):
        """``(gamma, beta)`` of a blend: float32 ``[B, C]`` each (None where not learned)."""
        weights = tf.cast(style_weights, tf.float32)
        pick = lambda table: None if table is None else tf.matmul(weights, tf.cast(table, tf.float32))  # noqa: E731
        return pick(self.gamma), pick(self.beta)

    def call(self, inputs, style_weights=None, statistics=None, return_statistics=False):
        if style_weights is None:
            raise ConfigError(f"Layer {self.name!r} normalizes for one of {self.num_styles} styles and needs "
                              f"`style_weights` [B, {self.num_styles}]. Received: style_weights=None")
        x = tf.cast(inputs, tf.float32)
        if statistics is None:
            statistics = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        mean, variance = statistics
        y = (x - mean) * tf.math.rsqrt(variance + self.epsilon)
        gamma, beta = self.blended(style_weights)
        if gamma is not None:
            y = y * gamma[:, None, None, :]
        if beta is not None:
            y = y + beta[:, None, None, :]
        y = tf.cast(y, self.compute_dtype)
        return (y, (mean, variance)) if return_statistics else y

    def get_config(self):
        return {**super().get_config(), "num_styles": self.num_styles}


@keras.saving.register_keras_serializable(package="nst_tf")
class ConvBlock(keras.layers.Layer):
    """Reflection padding, convolution, instance normalization, activation.

    Args:
        filters: int. Output channels.
        kernel_size: int. Odd square kernel size; the padding is ``kernel_size // 2``.
        strides: int. Convolution stride. Defaults to 1.
        normalize: bool. Apply :class:`InstanceNormalization`. Defaults to True.
        activation: str or None. Keras activation after the normalization.
            Defaults to ``"relu"``.
        num_styles: int or None. With an int, the normalization is
            :class:`ConditionalInstanceNormalization` over that many styles.
            Defaults to None (one style, :class:`InstanceNormalization`).
        **kwargs: ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: tensor ``[B, H, W, C]``.
        style_weights: float ``[B, num_styles]``, needed when `num_styles` is set.
        statistics: optional ``(mean, variance)`` for the instance normalization.
        return_statistics: bool. Also return the list of statistics used.

    Returns:
        tensor ``[B, ceil(H / strides), ceil(W / strides), filters]`` (exact for odd
        kernels), or ``(tensor, [statistics])``.
    """

    def __init__(self, filters, kernel_size, strides=1, normalize=True, activation="relu", num_styles=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.normalize = normalize
        self.activation = activation
        self.num_styles = _check_num_styles(num_styles)
        policy = self.dtype_policy
        self.pad = ReflectionPadding2D(kernel_size // 2, dtype=policy, name="pad")
        self.conv = keras.layers.Conv2D(filters, kernel_size, strides=strides, dtype=policy, name="conv")
        self.norm = None
        if normalize:
            self.norm = (InstanceNormalization(dtype=policy, name="norm") if num_styles is None else
                         ConditionalInstanceNormalization(num_styles, dtype=policy, name="norm"))
        self.act = keras.layers.Activation(activation, dtype=policy, name="act") if activation else None

    def build(self, input_shape):
        if self.built:  # Keras marks the layer built; a second call must not add weights.
            return
        self.conv.build(self.pad.compute_output_shape(input_shape))
        if self.norm is not None:
            self.norm.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, inputs, style_weights=None, statistics=None, return_statistics=False):
        x = self.conv(self.pad(inputs))
        used = []
        if self.norm is not None:
            given = None if statistics is None else statistics[0]
            conditional = {} if self.num_styles is None else {"style_weights": style_weights}
            x, stats = self.norm(x, statistics=given, return_statistics=True, **conditional)
            used.append(stats)
        if self.act is not None:
            x = self.act(x)
        return (x, used) if return_statistics else x

    def compute_output_shape(self, input_shape):
        out = lambda size: None if size is None else -(-size // self.strides)  # noqa: E731
        return (input_shape[0], out(input_shape[1]), out(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "normalize": self.normalize, "activation": self.activation,
                "num_styles": self.num_styles}


@keras.saving.register_keras_serializable(package="nst_tf")
class ResidualBlock(keras.layers.Layer):
    """Two 3x3 ConvBlocks with an identity shortcut (He et al. 2016; Johnson 2016 suppl.).

    ``y = x + IN(conv(ReLU(IN(conv(x)))))``; no activation after the sum, as in
    Johnson's supplementary material (and Gross and Wilber 2016).

    Args:
        filters: int. Channels of input and output.
        kernel_size: int. Odd kernel size. Defaults to 3.
        num_styles: int or None. Conditional instance normalization over that many
            styles (:class:`ConvBlock`). Defaults to None.
        **kwargs: ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: tensor ``[B, H, W, filters]``.
        style_weights: float ``[B, num_styles]``, needed when `num_styles` is set.
        statistics: optional list of two ``(mean, variance)`` pairs.
        return_statistics: bool. Also return the list of statistics used.

    Returns:
        tensor ``[B, H, W, filters]``, or ``(tensor, statistics)``.
    """

    def __init__(self, filters, kernel_size=3, num_styles=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.num_styles = _check_num_styles(num_styles)
        policy = self.dtype_policy
        self.block1 = ConvBlock(filters, kernel_size, num_styles=num_styles, dtype=policy, name="block1")
        self.block2 = ConvBlock(filters, kernel_size, activation=None, num_styles=num_styles, dtype=policy,
                                name="block2")

    def build(self, input_shape):
        for block in (self.block1, self.block2):
            block.build(input_shape)

    def call(self, inputs, style_weights=None, statistics=None, return_statistics=False):
        first, second = (None, None) if statistics is None else statistics
        x, used1 = self.block1(inputs, style_weights=style_weights, statistics=first, return_statistics=True)
        x, used2 = self.block2(x, style_weights=style_weights, statistics=second, return_statistics=True)
        x = inputs + x
        return (x, [used1, used2]) if return_statistics else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "num_styles": self.num_styles}


@keras.saving.register_keras_serializable(package="nst_tf")
class UpsampleConv2D(keras.layers.Layer):
    """Nearest-neighbour upsampling then a ConvBlock: resize-convolution.

    Replaces the fractionally strided convolution of Johnson 2016, whose uneven
    kernel overlap paints checkerboard artifacts (Odena et al. 2016).

    Args:
        filters: int. Output channels.
        kernel_size: int. Odd kernel size. Defaults to 3.
        size: int. Upsampling factor of height and width. Defaults to 2.
        normalize: bool. Instance normalization after the convolution. Defaults to True.
        activation: str or None. Defaults to ``"relu"``.
        num_styles: int or None. Conditional instance normalization over that many
            styles (:class:`ConvBlock`). Defaults to None.
        **kwargs: ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: tensor ``[B, H, W, C]``.
        style_weights: float ``[B, num_styles]``, needed when `num_styles` is set.
        statistics: optional ``[(mean, variance)]`` for the normalization.
        return_statistics: bool. Also return the list of statistics used.

    Returns:
        tensor ``[B, size * H, size * W, filters]``, or ``(tensor, statistics)``.
    """

    def __init__(self, filters, kernel_size=3, size=2, normalize=True, activation="relu", num_styles=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.size = size
        self.normalize = normalize
        self.activation = activation
        self.num_styles = _check_num_styles(num_styles)
        policy = self.dtype_policy
        self.upsample = keras.layers.UpSampling2D(size, interpolation="nearest", dtype=policy, name="upsample")
        self.block = ConvBlock(filters, kernel_size, normalize=normalize, activation=activation,
                               num_styles=num_styles, dtype=policy, name="block")

    def build(self, input_shape):
        self.block.build(self.upsample.compute_output_shape(input_shape))

    def call(self, inputs, style_weights=None, statistics=None, return_statistics=False):
        x = with_static_channels(self.upsample(inputs), inputs.shape[-1])
        return self.block(x, style_weights=style_weights, statistics=statistics, return_statistics=return_statistics)

    def compute_output_shape(self, input_shape):
        return self.block.compute_output_shape(self.upsample.compute_output_shape(input_shape))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "size": self.size, "normalize": self.normalize, "activation": self.activation,
                "num_styles": self.num_styles}
