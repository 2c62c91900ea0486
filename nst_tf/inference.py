"""The compiled inference graph of a trained TransformerNet, built from its weights.

:class:`TransformerInference` computes what ``TransformerNet.call`` computes, up to
floating-point rounding, with fewer passes over memory and fewer FLOPs.  Each rewrite
was timed against the Keras call (BENCHMARKS.md, ``fast-inference``) and kept only
because it is faster:

* **Instance normalization as oneDNN's batch norm.**  For a batch of one image,
  batch statistics are instance statistics (Ulyanov et al. 2016), so each norm is one
  ``FusedBatchNormV3`` (training mode: it computes the moments; inference mode with
  *given* statistics for tiled inference) instead of four elementwise passes.  Batches
  run image by image (``tf.map_fn``), so a batch gives exactly its images' pixels.
* **No conv bias before instance normalization**: subtracting the mean removes it
  exactly; with given statistics the bias is folded into the mean, ``mean - bias``.
* **Reflection pads as slices and concatenations** (:func:`pad_spatial`), faster than
  TensorFlow's ``MirrorPad`` kernel on these CPUs (BENCHMARKS.md, ``fast-inference``).
* **Sub-pixel upsampling convolutions** (:func:`phase_kernel`).  A 3x3 convolution of
  the reflection-padded 2x nearest-neighbour upsampling of ``x`` equals, at each of
  the four output phases ``(a, b)``, a 2x2 convolution of ``x`` edge-padded by one
  pixel (reflecting one pixel of a nearest-upsampled image repeats the
  low-resolution edge), with the 3x3 kernel's rows and columns summed in pairs:
  ``(K0, K1 + K2)`` for phase 0 and ``(K0 + K1, K2)`` for phase 1.  The four phases
  run as one 2x2 convolution with ``4 C_out`` channels and are interleaved after it:
  16 instead of 36 multiply-adds per low-resolution pixel and channel pair, and no
  upsampled intermediate before the convolution (the sub-pixel rearrangement of
  Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network", CVPR 2016).
* **Blocked head** (:func:`blocked_kernel`).  The 9x9 ``C -> 3`` output convolution,
  whose 3 output channels leave oneDNN's vector units mostly idle, runs as a stride-4
  12x12 convolution to ``48 = 4 * 4 * 3`` channels and ``depth_to_space(4)``: each
  output channel is one position of a 4x4 block.  It executes ``(12 / 9)^2 = 1.78``
  times the head's FLOPs, several times faster.

So the graph *executes* fewer conv FLOPs than the architecture defines (73.2 instead
of 80.6 GFLOP at 512 x 512); benchmarks report both.  Tried and dropped: the code
between two convolutions as nested XLA functions (slower than the batch-norm kernel,
about 2 s of XLA compilation per new image shape, and TF Serving runs no XLA JIT by
default).

The derived kernels are computed from the model's variables inside the graph on
every call (microseconds), so the graph follows weight updates, and a SavedModel of
it stores the model's own variables only.  Functions are traced once, with input
signature ``[None, None, None, 3]``; only standard TensorFlow ops are used.

A multi-style network (conditional instance normalization, Dumoulin et al. 2017)
takes blend weights ``[B, N]`` next to the images; each image's ``gamma`` and
``beta`` are its weights times the network's tables, computed inside the per-image
loop, so the style input adds one tiny matrix product per normalization.

Source of the network: Johnson, Alahi, Fei-Fei, "Perceptual Losses for Real-Time
Style Transfer and Super-Resolution", ECCV 2016; see :mod:`nst_tf.transformer`.
"""

import dataclasses
import weakref

import keras
import numpy as np
import tensorflow as tf

from nst_tf.errors import ConfigError
from nst_tf.layers import ResidualBlock, UpsampleConv2D
from nst_tf.transformer import TransformerNet, align_padding, style_argument

HEAD_BLOCK = 4
"""Side of the output blocks the head convolution computes per position (stride of the blocked head)."""

_PLAIN, _RES1, _RES2, _UP = "plain", "res1", "res2", "up"


@dataclasses.dataclass(frozen=True)
class _Conv:
    """One normalized convolution of the network, as plain variables and static settings."""

    kernel: object
    bias: object
    gamma: object
    beta: object
    epsilon: float
    strides: int
    relu: bool
    role: str


def _convs_of(model):
    """The normalized convolutions of a TransformerNet in order, and its head conv layer."""
    convs = []
    for parent, blocks in model.conv_blocks():
        for position, block in enumerate(blocks):
            role = _PLAIN
            if isinstance(parent, ResidualBlock):
                role = (_RES1, _RES2)[position]
            elif isinstance(parent, UpsampleConv2D):
                role = _UP
            norm = block.norm
            convs.append(_Conv(block.conv.kernel, block.conv.bias if block.conv.use_bias else None, norm.gamma,
                               norm.beta, float(norm.epsilon), int(block.strides), block.activation == "relu", role))
    return convs, model.head.conv


# Phase rows: R[a, i, k] = 1 when 3x3 kernel row k falls on tap i of the 2x2 kernel of phase a.
_PHASE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]],
                        [[1, 1, 0], [0, 0, 1]]], np.float32)


def phase_kernel(kernel):
    """The 2x2 sub-pixel kernel ``[2, 2, C_in, 4 C_out]`` of a 3x3 resize-convolution kernel.

    ``conv2d(edge_pad(x, 1), phase_kernel(K), VALID)[:, a:a + h, b:b + w, (2a + b) C_out:(2a + b + 1) C_out]``
    equals ``conv2d(reflect_pad(upsample2x(x), 1), K, VALID)[:, a::2, b::2]`` for an
    ``h x w`` input ``x``.

    Args:
        kernel: float tensor ``[3, 3, C_in, C_out]``.

    Returns:
        tensor ``[2, 2, C_in, 4 * C_out]`` of the same dtype.
    """
    taps = tf.constant(_PHASE_TAPS, kernel.dtype)
    combined = tf.einsum("aik,bjl,klcd->ijcabd", taps, taps, kernel)
    shape = tf.shape(kernel)
    return tf.reshape(combined, [2, 2, shape[2], 4 * shape[3]])


def blocked_kernel(kernel, block=HEAD_BLOCK):
    """The stride-`block` kernel ``[k + block - 1, ..., C_in, block^2 C_out]`` of a ``k x k`` kernel.

    ``depth_to_space(conv2d(x, blocked_kernel(K), block, VALID), block)`` equals
    ``conv2d(x, K, 1, VALID)`` when the latter's output sides are multiples of `block`.

    Args:
        kernel: float tensor ``[k, k, C_in, C_out]``.
        block: int >= 1.

    Returns:
        tensor ``[k + block - 1, k + block - 1, C_in, block * block * C_out]``.
    """
    extra = block - 1
    parts = [tf.pad(kernel, [[a, extra - a], [b, extra - b], [0, 0], [0, 0]])
             for a in range(block) for b in range(block)]
    return tf.concat(parts, axis=-1)


def _interleave_phases(y):
    """``[B, h + 1, w + 1, 4 C]`` phase-conv output -> ``[B, 2h, 2w, C]`` upsampled image."""
    shape = tf.shape(y)
    height, width, channels = shape[1] - 1, shape[2] - 1, shape[3] // 4
    rows = []
    for a in range(2):
        columns = [y[:, a:a + height, b:b + width, (2 * a + b) * channels:(2 * a + b + 1) * channels]
                   for b in range(2)]
        rows.append(tf.stack(columns, axis=3))  # [B, h, w, 2, C]
    stacked = tf.stack(rows, axis=2)  # [B, h, 2, w, 2, C]
    return tf.reshape(stacked, [shape[0], 2 * height, 2 * width, channels])


def _upsample_nearest(x):
    shape = tf.shape(x)
    y = tf.broadcast_to(x[:, :, None, :, None, :], [shape[0], shape[1], 2, shape[2], 2, shape[3]])
    return tf.reshape(y, [shape[0], 2 * shape[1], 2 * shape[2], shape[3]])


def pad_spatial(x, pad, mode="REFLECT"):
    """``tf.pad`` of height and width by `pad` pixels, as slices and two concatenations.

    Equals ``tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode)`` bit for bit
    (tested), and faster than TensorFlow's ``MirrorPad`` kernel on these CPUs (bfloat16
    most; BENCHMARKS.md); ``pad`` is small here (1 or 4).

    Args:
        x: tensor ``[B, H, W, C]``.
        pad: int >= 0; < H and W for ``"REFLECT"``, <= them for ``"SYMMETRIC"``.
        mode: ``"REFLECT"`` (edge not repeated) or ``"SYMMETRIC"`` (edge repeated).

    Returns:
        tensor ``[B, H + 2 pad, W + 2 pad, C]``.
    """
    if not pad:
        return x
    shift = 1 if mode == "REFLECT" else 0

    def take(tensor, axis, start, stop):
        return tensor[:, start:stop] if axis == 1 else tensor[:, :, start:stop]

    for axis in (1, 2):
        size = tf.shape(x)[axis]
        before = [take(x, axis, i, i + 1) for i in range(pad - 1 + shift, shift - 1, -1)]
        after = [take(x, axis, size - 1 - i, size - i) for i in range(shift, pad + shift)]
        x = tf.concat(before + [x] + after, axis=axis)
    return x


def _instance_norm(y, gamma, beta, bias, given_mean, given_variance, epsilon):
    """Instance norm of ONE image (``[1, H, W, C]``) as oneDNN's FusedBatchNormV3.

    With a batch of one, batch statistics are instance statistics.  Returns the output
    in ``y``'s dtype and the statistics in the model's convention: float32
    ``[1, 1, 1, C]``, of the conv output with its bias, population variance.
    """
    channels = tf.shape(y)[-1:]
    if given_mean is None:
        out, mean, variance = tf.compat.v1.nn.fused_batch_norm(y, gamma, beta, epsilon=epsilon, is_training=True)[:3]
        count = tf.cast(tf.reduce_prod(tf.shape(y)[1:3]), tf.float32)
        variance = variance * ((count - 1.0) / count)  # The op reports the Bessel-corrected variance.
        return out, tf.reshape(mean + bias, [1, 1, 1, -1]), tf.reshape(variance, [1, 1, 1, -1])
    mean, variance = tf.reshape(given_mean, channels) - bias, tf.reshape(given_variance, channels)
    out = tf.compat.v1.nn.fused_batch_norm(y, gamma, beta, mean=mean, variance=variance, epsilon=epsilon,
                                           is_training=False)[0]
    return out, given_mean, given_variance


class TransformerInference(tf.Module):
    """The inference forward pass of a TransformerNet: same outputs, compiled, less work.

    Computes ``model(images, statistics=..., return_statistics=...)`` up to float
    rounding (see the module docstring for how; tests bound the difference from the
    Keras call).  Reads the model's variables on every call, so it follows later
    weight changes; holds no reference to the model object itself, only its variables.
    Images of a batch run one after another (``tf.map_fn``): instance normalization is
    per image, and a batch gives the same pixels as its images one by one.

    Args:
        model: :class:`~nst_tf.transformer.TransformerNet`, built.
        compute_dtype: None, ``"float32"`` or ``"bfloat16"``. Dtype of the convolutions
            and activations; None takes the model's compute dtype (``"bfloat16"`` under
            the ``mixed_bfloat16`` policy). Normalization statistics are float32.
        phase_upsampling: bool. Sub-pixel 2x2 phase convolutions for the two
            upsampling convolutions; False upsamples and runs the 3x3 convolution.
            Defaults to True.
        head_block: int, 1, 2 or 4. Output block side of the head convolution (1: the
            plain 9x9 convolution). Defaults to :data:`HEAD_BLOCK`.

    Call arguments (as ``TransformerNet.call``):
        images: float ``[B, H, W, 3]``, RGB in [0, 255], H and W >= 4.
        style: multi-style networks only (and then required): int ``[B]`` indices or
            float ``[B, N]`` / ``[N]`` blend weights.
        statistics: optional nested instance-norm statistics as returned with
            ``return_statistics=True`` (by the model or by this object), each float32
            ``[B or 1, 1, 1, C]``.
        return_statistics: bool. Also return the statistics used.

    Returns:
        float32 ``[B, H, W, 3]`` in [0, 255], or ``(images, statistics)``.

    Raises:
        ConfigError: `model` is not a built TransformerNet, a bad option, or
            `statistics` that do not match the network.
    """

    def __init__(self, model, compute_dtype=None, phase_upsampling=True, head_block=HEAD_BLOCK):
        super().__init__(name="transformer_inference")
        if not isinstance(model, TransformerNet) or not model.built:
            raise ConfigError(f"TransformerInference needs a built nst_tf TransformerNet. "
                              f"Received: model of type {type(model).__name__}")
        compute_dtype = model.compute_dtype if compute_dtype is None else compute_dtype
        if compute_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"`compute_dtype` must be 'float32' or 'bfloat16'. Received: "
                              f"compute_dtype={compute_dtype!r}")
        if head_block not in (1, 2, 4) or isinstance(head_block, bool):
            raise ConfigError(f"`head_block` must be 1, 2 or 4 (a divisor of the network's size alignment). "
                              f"Received: head_block={head_block!r}")
        self.compute_dtype = tf.as_dtype(compute_dtype)
        self.phase_upsampling = bool(phase_upsampling)
        self.head_block = head_block
        self._convs, head = _convs_of(model)
        self._head_kernel, self._head_bias = head.kernel, head.bias if head.use_bias else None
        # Statistics nest as the blocks return them: a residual block holds its two convolutions' pairs.
        self._residual = [isinstance(block, ResidualBlock) for block in model.blocks]
        # Tracked, so that a SavedModel of this module holds the variables its functions read.
        self.weights = list(model.weights)
        self._channels = [int(c.kernel.shape[-1]) for c in self._convs]
        self.num_styles = model.num_styles
        self.style_names = None if model.style_names is None else list(model.style_names)
        spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
        stats = [tf.TensorSpec([None, 1, 1, c], tf.float32) for c in self._channels]
        if self.num_styles is None:
            self.stylize = tf.function(self._own, input_signature=[spec])
            self.stylize_with_statistics = tf.function(self._given, input_signature=[spec, stats, stats])
        else:
            style = tf.TensorSpec([None, self.num_styles], tf.float32, name="style_weights")
            self.stylize = tf.function(self._own_styled, input_signature=[spec, style])
            self.stylize_with_statistics = tf.function(self._given_styled, input_signature=[spec, style, stats, stats])

    # ------------------------------------------------------------------ graph

    def _norm_params(self, conv, style):
        channels = tf.shape(conv.kernel)[-1:]

        def pick(table, default):
            if table is None:
                return default(channels)
            table = tf.cast(table, tf.float32)
            return table if style is None else tf.linalg.matvec(table, style, transpose_a=True)

        gamma, beta = pick(conv.gamma, tf.ones), pick(conv.beta, tf.zeros)
        bias = tf.zeros(channels) if conv.bias is None else tf.cast(conv.bias, tf.float32)
        return gamma, beta, bias

    def _kernels(self):
        """The convolution kernels in the compute dtype, derived ones included (once per call)."""
        kernels = []
        for conv in self._convs:
            kernel = tf.convert_to_tensor(conv.kernel)
            if conv.role == _UP and self.phase_upsampling:
                kernel = phase_kernel(kernel)
            kernels.append(tf.cast(kernel, self.compute_dtype))
        head = tf.convert_to_tensor(self._head_kernel)
        if self.head_block > 1:
            head = blocked_kernel(head, self.head_block)
        return kernels, tf.cast(head, self.compute_dtype)

    def _one_image(self, x, kernels, head_kernel, given, style=None):
        """The network on one padded image ``[1, H + 8, W + 8, 3]`` (H, W multiples of 4) in the compute dtype.

        `style` is the image's float32 ``[N]`` blend weights (multi-style networks).
        """
        h, skip, means, variances = x, None, [], []
        for index, conv in enumerate(self._convs):
            y = tf.nn.conv2d(h, kernels[index], conv.strides, "VALID")
            if conv.role == _UP and self.phase_upsampling:
                y = _interleave_phases(y)
            gamma, beta, bias = self._norm_params(conv, style)
            mean, variance = (None, None) if given is None else (given[0][index], given[1][index])
            out, mean, variance = _instance_norm(y, gamma, beta, bias, mean, variance, conv.epsilon)
            if conv.relu:
                out = tf.nn.relu(out)
            if conv.role == _RES2:
                out = out + skip
            means.append(mean)
            variances.append(variance)
            following = self._convs[index + 1].role if index + 1 < len(self._convs) else "head"
            if following == _RES1:
                skip = out
            if following == _UP and self.phase_upsampling:
                h = pad_spatial(out, 1, "SYMMETRIC")  # Reflecting 1 px of a 2x nearest upsampling.
            elif following == _UP:
                h = pad_spatial(_upsample_nearest(out), 1)
            else:
                size = self._head_kernel.shape[0] if following == "head" else self._convs[index + 1].kernel.shape[0]
                h = pad_spatial(out, int(size) // 2)
        block = self.head_block
        y = tf.nn.conv2d(h, head_kernel, block, "VALID")
        if self._head_bias is not None:
            y = tf.nn.bias_add(y, tf.cast(tf.tile(self._head_bias, [block * block]), self.compute_dtype))
        if block > 1:
            y = tf.nn.depth_to_space(y, block)
        return y, means, variances

    def _forward(self, images, given, loop=True, style=None):
        images = tf.convert_to_tensor(images, tf.float32)
        batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
        if self.num_styles is not None:
            style = tf.broadcast_to(tf.cast(style, tf.float32), [batch, self.num_styles])
        (top, bottom), (left, right) = align_padding(height, width)
        x = images / 127.5 - 1.0
        x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="REFLECT")
        x = tf.cast(pad_spatial(x, int(self._convs[0].kernel.shape[0]) // 2), self.compute_dtype)
        kernels, head_kernel = self._kernels()
        if given is not None:  # Statistics of one image apply to all of the batch.
            given = [[tf.broadcast_to(s, [batch, 1, 1, c]) for s, c in zip(part, self._channels)] for part in given]

        def one(elements):
            image, stats, weights = elements
            pairs = None if given is None else ([m[None] for m in stats[0]], [v[None] for v in stats[1]])
            y, means, variances = self._one_image(image[None], kernels, head_kernel, pairs,
                                                  None if style is None else weights)
            return y[0], [m[0] for m in means], [v[0] for v in variances]

        stats_spec = [tf.TensorSpec([1, 1, c], tf.float32) for c in self._channels]
        elements = (x, given if given is not None else ([], []), style if style is not None else tf.zeros([batch]))
        if loop:
            y, means, variances = tf.map_fn(
                one, elements, parallel_iterations=1,
                fn_output_signature=(tf.TensorSpec([None, None, 3], self.compute_dtype), stats_spec, stats_spec))
        else:  # One image, no loop: every op in one graph (FLOP counting).
            y, means, variances = tf.nest.map_structure(lambda t: t[None], one(tf.nest.map_structure(
                lambda t: t[0], elements)))
        y = tf.cast(y[:, top:top + height, left:left + width], tf.float32)
        return 127.5 * (tf.tanh(y) + 1.0), means, variances

    def _own(self, images):
        return self._forward(images, None)

    def _own_styled(self, images, style):
        return self._forward(images, None, style=style)

    def _given_styled(self, images, style, means, variances):
        return self._forward(images, (means, variances), style=style)[0]

    def forward_one_image(self, images, style=None):
        """The forward pass of a batch of ONE image without the per-image loop (``tf.map_fn``).

        Same ops as :meth:`stylize`, all in the calling graph, so that a trace of this
        call shows every executed convolution (to count their FLOPs).

        Args:
            images: float32 ``[1, H, W, 3]`` in [0, 255].

        Returns:
            float32 ``[1, H, W, 3]`` in [0, 255].
        """
        return self._forward(images, None, loop=False, style=self._style(style, 1))[0]

    def _given(self, images, means, variances):
        return self._forward(images, (means, variances))[0]

    # ------------------------------------------------------------------ statistics

    def flatten_statistics(self, statistics):
        """Nested statistics of ``TransformerNet.call`` -> ``(means, variances)``, float32 lists.

        Raises:
            ConfigError: the structure or channel counts do not match this network.
        """
        means, variances = [], []
        try:
            for residual, item in zip(self._residual, statistics, strict=True):
                pairs = [item[0][0], item[1][0]] if residual else [item[0]]
                for mean, variance in pairs:
                    means.append(tf.cast(mean, tf.float32))
                    variances.append(tf.cast(variance, tf.float32))
            shapes_ok = all(m.shape.rank == 4 and m.shape[-1] == c and v.shape == m.shape
                            for m, v, c in zip(means, variances, self._channels))
        except (TypeError, ValueError, IndexError):
            shapes_ok = False
        if not shapes_ok:
            raise ConfigError(f"`statistics` must be the nested list of (mean, variance) pairs, each "
                              f"[B or 1, 1, 1, C], that return_statistics=True gives for this network "
                              f"({len(self._residual)} blocks). Received: {type(statistics).__name__}")
        return means, variances

    def nest_statistics(self, means, variances):
        """``(means, variances)`` lists -> the nested statistics of ``TransformerNet.call``."""
        pairs = iter(zip(means, variances))
        nested = []
        for residual in self._residual:
            nested.append([[next(pairs)], [next(pairs)]] if residual else [next(pairs)])
        return nested

    def _style(self, style, batch):
        """The ``[B, N]`` float32 blend weights of a call (nothing for a single-style network)."""
        return style_argument(self.style_names, style, batch)

    def __call__(self, images, style=None, statistics=None, return_statistics=False):
        images = tf.convert_to_tensor(images, tf.float32)
        weights = self._style(style, tf.shape(images)[0])
        extra = () if weights is None else (weights,)
        if statistics is None:
            output, means, variances = self.stylize(images, *extra)
            return (output, self.nest_statistics(means, variances)) if return_statistics else output
        means, variances = self.flatten_statistics(statistics)
        output = self.stylize_with_statistics(images, *extra, means, variances)
        return (output, statistics) if return_statistics else output


_CACHE = weakref.WeakKeyDictionary()


def inference_graph(model, compute_dtype=None):
    """The cached :class:`TransformerInference` of `model` (one per model and compute dtype).

    Built on first use and kept as long as the model lives (the graph holds the model's
    variables, not the model), so repeated calls reuse the traced functions.

    Args:
        model: built TransformerNet.
        compute_dtype: None (the model's), ``"float32"`` or ``"bfloat16"``.

    Returns:
        TransformerInference.

    Raises:
        ConfigError: see :class:`TransformerInference`.
    """
    if not isinstance(model, TransformerNet):
        raise ConfigError(f"inference_graph needs an nst_tf TransformerNet. Received: model of type "
                          f"{type(model).__name__}")
    key = keras.backend.standardize_dtype(model.compute_dtype if compute_dtype is None else compute_dtype)
    graphs = _CACHE.setdefault(model, {})
    if key not in graphs:
        graphs[key] = TransformerInference(model, compute_dtype=key)
    return graphs[key]


def round_to_uint8(images):
    """Float pixels to uint8 inside a TensorFlow graph: the pixel contract of a served network.

    Rounds half to even and clips, as the NumPy :func:`nst_tf.images.to_uint8` does on
    the host.

    Args:
        images: float tensor of any shape, values in [0, 255] (others are clipped).

    Returns:
        tf.Tensor uint8 of the same shape.
    """
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)
