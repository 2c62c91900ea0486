"""Memory estimates of a run from its requested sizes, so a too-large one fails early and clearly.

Three estimates: an optimization step (:func:`estimate_step_bytes`), applying a trained
TransformerNet (:func:`estimate_stylize_bytes`) and a training step
(:func:`estimate_train_bytes`).  Each comes from the architecture and the requested
sizes alone, so the command line checks it before TensorFlow is imported or any image
is decoded; ``NST_TF_SKIP_MEMORY_CHECK=1`` skips the checks.

**Optimization step.**  The step keeps every activation of the truncated network for
the backward pass and builds gradients of the same sizes, so its peak memory grows
with the pixel count times the summed channel counts of the layers, each divided by
its downsampling.  ``BYTES_PER_ACTIVATION`` folds TensorFlow's buffers (activations,
their gradients, convolution workspaces) into one calibrated factor; BENCHMARKS.md
("memory") has the measurements it comes from.

**Trained networks.**  Applying one holds only a few full-resolution tensors at a time,
so its memory grows with the pixels times the first convolution's width; tiles bound
that part, not the image-sized buffers.  A training step keeps every activation of
the transformer and of the loss network.  The factors were calibrated on peak resident
memory (``/usr/bin/time -v``, maximum resident set) of ``scripts/stylize.py --model``
on chicago.jpg (712x474, resized) and ``scripts/train.py --steps 2-3``, TensorFlow
2.21, 2 CPU cores.  Measured peak GiB (estimate):

- stylize, width 0.5: 1024 px 0.89 (1.07), 2048 px 1.37 (1.72), 3000 px 2.18 (2.73);
- stylize, width 1: 2048 px 1.99 (2.47), 4096 px 5.56 (7.34);
- stylize tiled, width 0.5: 3000 px ``--tile 512`` 1.21 (1.47), 6000 px ``--tile 1024`` 2.91 (3.32);
- stylize, SavedModel of the width 0.5 network, 2048 px: 1.58 (2.47, counted at width 1);
- train squeezenet1_1, batch 2, 128 px: 1.00 (1.20); batch 4, 256 px: 2.16 (2.63), mixed
  precision 1.90 (2.39); batch 4, 512 px: 5.97 (7.53); width 0.5, batch 2, 512 px: 2.42 (2.94);
- train vgg16 (random weights), batch 2, 256 px: 1.92 (2.20).

So the estimates run 14-32% above the measured peaks (57% for a SavedModel).
"""

import dataclasses
import os

from nst_tf import backbones, files
from nst_tf.config import TRAIN_LAYERS, aligned_size, transformer_channels
from nst_tf.errors import ConfigError

# Peak resident bytes per float32 activation element of the truncated network during one
# step (forward + backward), measured on VGG19 at 512-2048 px: 6.3-7.0 (BENCHMARKS.md, memory).
BYTES_PER_ACTIVATION = 7.5
# Resident set of TensorFlow, Keras and the weights before any image is processed.
BASE_BYTES = 0.85 * 2**30


def estimate_step_bytes(config, height, width, precision=None):
    """Estimated peak resident memory, bytes, of one optimization step on an H x W image.

    Args:
        config: StyleConfig (backbone, layers; ``precision`` unless given).
        height, width: int. Output size, pixels.
        precision: str or None. ``float32``, ``bfloat16`` or ``float16``; None: the config's.

    Returns:
        float, bytes.
    """
    precision = precision or config.precision
    content_layers, style_layers = config.resolved_layers()
    elements = backbones.activation_elements(config.backbone, content_layers + style_layers, height, width)
    scale = 0.6 if precision != "float32" else 1.0  # Half-size activations; float32 gradients kept.
    return BASE_BYTES + BYTES_PER_ACTIVATION * scale * elements


def output_size(image_size, longest):
    """``(height, width)`` of an image of ``image_size = (width, height)`` resized to a longest side."""
    width, height = image_size
    factor = longest / max(width, height)
    return max(1, round(height * factor)), max(1, round(width * factor))


def available_bytes():
    """Memory this process may still use: the smaller of MemAvailable and the cgroup limit."""
    candidates = []
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        candidates.append(int(fields["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as limit, open(usage_file) as usage:
                text = limit.read().strip()
                if text != "max" and int(text) < 2**60:
                    candidates.append(int(text) - int(usage.read().strip()))
        except (OSError, ValueError):
            continue
    return min(candidates) if candidates else None


def check_fits(config, size, available=None):
    """Raises ConfigError before a run whose step would not fit in memory.

    Args:
        config: StyleConfig of the run (``backbone``, layers, ``precision``).
        size: ``(height, width)`` of the output, pixels.
        available: bytes available; measured from the system when None.

    Raises:
        ConfigError: unknown layer of the backbone, or the estimate exceeds the available
            memory; the message gives both and suggests a smaller ``--image-size``.
    """
    height, width = size
    # The last scale is the output size, and the largest step, in its own precision.
    needed = estimate_step_bytes(config, height, width, config.precision_plan()[-1])
    available = available if available is not None else available_bytes()
    if available is None or os.environ.get("NST_TF_SKIP_MEMORY_CHECK"):
        return
    if needed > available:
        raise ConfigError(
            f"A {width}x{height} image needs about {needed / 2**30:.1f} GiB for {config.backbone} but only "
            f"{available / 2**30:.1f} GiB is available. Use a smaller --image-size (or --scales ending "
            f"lower), --precision bfloat16, or a bigger machine. Received: image_size={config.output_size}"
        )


# --- trained networks: applying one (fast path) and training one ---

DEFAULT_ARCHITECTURE = ((32, 64, 128), 5, 1.0)
"""``(filters, num_residual_blocks, width_multiplier)`` of a default TransformerNet."""
# Full-resolution tensors of the first convolution's width alive at once in the compiled
# inference graph (sub-pixel upsampling output, its interleaving, normalization, padding):
# measured 3.4-3.6 (width 0.5 and 1, 1024-4096 px); 4.5 leaves a margin.
INFERENCE_LIVE_TENSORS = 4.5
# Image-sized buffers outside the network: decoded and resized photo, float32 input and
# output, uint8 output to save. Measured with the slope above: 28 bytes per pixel.
IMAGE_BYTES_PER_PIXEL = 48
# Tiled stylization holds the whole image several times over (input, padded copy, the
# output and weight accumulators, the blended and cropped output): measured 75 bytes per pixel.
TILED_BYTES_PER_PIXEL = 96
# Peak resident bytes per transformer activation element kept for the backward pass of a
# training step (activations and their gradients): measured 4.6 (squeezenet1_1, 128-256 px).
TRAIN_BYTES_PER_TRANSFORMER_ELEMENT = 6.0
# Resident set of TensorFlow, the data pipeline, the trainer and the style features before
# the first step: measured 0.83 GiB.
TRAIN_BASE_BYTES = 1.0 * 2**30
# Share of a float32 step's memory left under mixed_bfloat16 (float32 master weights, logits and
# normalization statistics stay): measured 0.8 (squeezenet1_1, batch 4, 256 px).
MIXED_PRECISION_TRAIN_SCALE = 0.85


def transformer_architecture(config):
    """``(filters, num_residual_blocks, width_multiplier)`` of a saved TransformerNet, without TensorFlow.

    A SavedModel folder keeps no readable config, so it (and a file that cannot be read,
    which the loader reports later) counts as the default full-width network,
    ``DEFAULT_ARCHITECTURE``: an upper bound for the shipped networks (width 0.5 and 1).

    Args:
        config: dict, the constructor arguments of a ``.keras`` file
            (:func:`nst_tf.files.keras_model_config`), or None.

    Returns:
        tuple ``(filters: tuple of 3 int, num_residual_blocks: int, width_multiplier: float)``.
    """
    if config is None:
        return DEFAULT_ARCHITECTURE
    try:
        return (tuple(int(f) for f in config.get("filters", DEFAULT_ARCHITECTURE[0])),
                int(config.get("num_residual_blocks", DEFAULT_ARCHITECTURE[1])),
                float(config.get("width_multiplier", DEFAULT_ARCHITECTURE[2])))
    except (TypeError, ValueError):
        return DEFAULT_ARCHITECTURE


def transformer_activation_elements(architecture, height, width):
    """Elements of the tensors a TransformerNet keeps for the backward pass, for one image.

    Each convolution block keeps its padded input and its convolution, normalization and
    ReLU outputs; an upsampling block also its upsampled input; the head its padded
    input, logits and output (:class:`nst_tf.transformer.TransformerNet`).

    Args:
        architecture: ``(filters, num_residual_blocks, width_multiplier)``.
        height, width: int. Input size, pixels.

    Returns:
        int, the summed element count.
    """
    c1, c2, c3 = transformer_channels(architecture[0], architecture[2])
    blocks = architecture[1]
    pixels = aligned_size(height) * aligned_size(width)
    tensors = [(3, 1), (c1, 1), (c1, 1), (c1, 1),                      # conv1
               (c1, 1), (c2, 2), (c2, 2), (c2, 2),                      # conv2, stride 2
               (c2, 2), (c3, 4), (c3, 4), (c3, 4),                      # conv3, stride 2
               *[(c3, 4)] * (8 * blocks),                               # 2 x (pad, conv, norm, ReLU/add)
               (c3, 2), (c3, 2), (c2, 2), (c2, 2), (c2, 2),             # up1: upsampled, padded, outputs
               (c2, 1), (c2, 1), (c1, 1), (c1, 1), (c1, 1),             # up2
               (c1, 1), (3, 1), (3, 1)]                                 # head
    return int(sum(channels * pixels // stride**2 for channels, stride in tensors))


def estimate_stylize_bytes(height, width, batch=1, architecture=DEFAULT_ARCHITECTURE, tile=0):
    """Estimated peak resident memory, bytes, of stylizing images with a trained network.

    Untiled (:func:`nst_tf.stylizer.stylize_image`), the compiled graph holds a few
    full-resolution tensors of the first convolution's width ``c1`` at a time:
    ``BASE_BYTES + batch * H * W * (IMAGE_BYTES_PER_PIXEL + 4 * INFERENCE_LIVE_TENSORS * c1)``.
    Tiled (:func:`nst_tf.stylizer.stylize_tiled`, used when the longest side exceeds
    `tile`): one tile's forward pass plus the image-sized accumulators,
    ``BASE_BYTES + H * W * TILED_BYTES_PER_PIXEL + untiled(tile, tile)``.  bfloat16
    counts as float32 (an upper bound).

    Args:
        height, width: int. Size of the images, pixels (after ``--image-size``).
        batch: int. Images of this size per forward pass.
        architecture: ``(filters, num_residual_blocks, width_multiplier)``
            (:func:`transformer_architecture`).
        tile: int. Tile side, pixels; 0: no tiling.

    Returns:
        float, bytes.
    """
    c1 = transformer_channels(architecture[0], architecture[2])[0]
    per_pixel = IMAGE_BYTES_PER_PIXEL + 4 * INFERENCE_LIVE_TENSORS * c1
    if tile and max(height, width) > tile:
        tile_pixels = min(aligned_size(height), tile) * min(aligned_size(width), tile)
        return BASE_BYTES + height * width * TILED_BYTES_PER_PIXEL + tile_pixels * per_pixel
    return BASE_BYTES + batch * aligned_size(height) * aligned_size(width) * per_pixel


def check_stylize_fits(model, sizes, longest=None, batch_size=1, tile=0, available=None):
    """Raises ConfigError before applying a trained network to images that would not fit in memory.

    Images of one size run in batches of `batch_size`, as ``stylize --model`` runs them.

    Args:
        model: str or path-like. ``.keras`` file or SavedModel folder (its architecture is
            read by :func:`transformer_architecture`; only a ``.keras`` network can be tiled).
        sizes: list of ``(width, height)`` of the photos, from their headers
            (:func:`nst_tf.images.read_size`).
        longest: int or None. ``--image-size``: longest side the photos are resized to; None keeps them.
        batch_size: int. Images per forward pass.
        tile: int. ``--tile``; 0: off.
        available: bytes available; measured from the system when None.

    Raises:
        ConfigError: the estimate of the largest batch exceeds the available memory; the
            message gives both and suggests ``--tile`` (when tiling would fit) or a smaller
            ``--image-size``, naming the largest that fits.
    """
    available = available if available is not None else available_bytes()
    if available is None or os.environ.get("NST_TF_SKIP_MEMORY_CHECK") or not sizes:
        return
    model_config = files.keras_model_config(model)
    architecture = transformer_architecture(model_config)
    counts = {}
    for size in sizes:
        shape = output_size(size, longest) if longest else (size[1], size[0])
        counts[shape] = counts.get(shape, 0) + 1
    needed, (height, width) = max(
        (estimate_stylize_bytes(*shape, min(batch_size, count), architecture, tile), shape)
        for shape, count in counts.items())
    if needed <= available:
        return
    batch = min(batch_size, counts[(height, width)])
    side = _largest_side(lambda side: estimate_stylize_bytes(
        *output_size((width, height), side), batch, architecture, tile) <= available, max(height, width))
    smaller = f"a smaller --image-size{f' (at most about {side} px here)' if side else ''}"
    if tile and max(height, width) > tile:
        advice = f"{smaller}; tiles bound the network's memory, not the image's"
    else:
        tiled = estimate_stylize_bytes(height, width, 1, architecture, 1024)
        tiling = model_config is not None and tiled <= available
        advice = f"--tile 1024 (about {tiled / 2**30:.1f} GiB), or {smaller}" if tiling else smaller
        if batch > 1:
            advice += ", or --batch-size 1"
    raise ConfigError(
        f"Stylizing a {width}x{height} image needs about {needed / 2**30:.1f} GiB but only "
        f"{available / 2**30:.1f} GiB is available. Use {advice}. "
        f"Received: image_size={longest}, tile={tile}, batch_size={batch_size}, model='{model}'"
    )


def _largest_side(fits, upper, lowest=16):
    """Largest side in [`lowest`, `upper`) for which the monotone `fits(side)` holds; None if none does."""
    low, high = lowest, upper
    if high <= low or not fits(low):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def estimate_train_bytes(config, architecture=None):
    """Estimated peak resident memory, bytes, of one training step.

    ``TRAIN_BASE_BYTES + batch * scale * (TRAIN_BYTES_PER_TRANSFORMER_ELEMENT * transformer
    + 2 * BYTES_PER_ACTIVATION * loss network)``: the transformer's kept activations
    (:func:`transformer_activation_elements`) and the loss network's, which runs once over
    the photos and the outputs together (2 * batch images, truncated at its deepest loss
    layer, :func:`nst_tf.backbones.activation_elements`; none for the pixel objective);
    ``scale`` is ``MIXED_PRECISION_TRAIN_SCALE`` under mixed precision, else 1.

    Args:
        config: TrainConfig (``batch_size``, ``image_size``, ``loss_network``, ``objective``,
            ``mixed_precision``, ``width_multiplier``, ``num_residual_blocks``).
        architecture: ``(filters, num_residual_blocks, width_multiplier)``; None: the
            config's new network.

    Returns:
        float, bytes.
    """
    if architecture is None:
        architecture = (DEFAULT_ARCHITECTURE[0], config.num_residual_blocks, config.width_multiplier)
    size = config.image_size
    per_image = TRAIN_BYTES_PER_TRANSFORMER_ELEMENT * transformer_activation_elements(architecture, size, size)
    if config.objective == "perceptual":
        layers = sum(TRAIN_LAYERS[config.loss_network], ())
        per_image += 2 * BYTES_PER_ACTIVATION * backbones.activation_elements(config.loss_network, layers,
                                                                              size, size)
    scale = MIXED_PRECISION_TRAIN_SCALE if config.mixed_precision else 1.0
    return TRAIN_BASE_BYTES + config.batch_size * scale * per_image


def check_train_fits(config, available=None):
    """Raises ConfigError before a training run whose step would not fit in memory.

    Args:
        config: TrainConfig. With ``init_model``, that network's architecture is read from
            its file (:func:`transformer_architecture`).
        available: bytes available; measured from the system when None.

    Raises:
        ConfigError: the estimate exceeds the available memory; the message gives both and
            suggests a smaller ``--image-size`` (naming the largest that fits) or ``--batch-size``.
    """
    available = available if available is not None else available_bytes()
    if available is None or os.environ.get("NST_TF_SKIP_MEMORY_CHECK"):
        return
    architecture = None
    if config.init_model:
        architecture = transformer_architecture(files.keras_model_config(config.init_model))
    needed = estimate_train_bytes(config, architecture)
    if needed > available:
        side = _largest_side(lambda side: estimate_train_bytes(
            dataclasses.replace(config, image_size=side), architecture) <= available, config.image_size)
        raise ConfigError(
            f"A training step on {config.batch_size} crops of {config.image_size}x{config.image_size} needs about "
            f"{needed / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB is available. Use a smaller "
            f"--image-size{f' (at most about {side} px here)' if side else ''} or --batch-size"
            f"{'' if config.mixed_precision else ', or --mixed-precision'}. "
            f"Received: image_size={config.image_size}, batch_size={config.batch_size}"
        )
