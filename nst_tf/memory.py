"""Memory estimate of an optimization step, so a too-large image fails early and clearly.

The step keeps every activation of the truncated network for the backward pass and
builds gradients of the same sizes, so its peak memory grows with the pixel count
times the summed channel counts of the layers, each divided by its downsampling.
``BYTES_PER_ACTIVATION`` folds TensorFlow's buffers (activations, their gradients,
convolution workspaces) into one calibrated factor; BENCHMARKS.md ("memory") has the
measurements it comes from.

The estimate comes from the backbone's architecture and the requested size alone, so
the command line checks it before TensorFlow is imported or any image is decoded.
"""

import os

from nst_tf import backbones
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
