"""Suite ``fast-peers``: our fast style networks against pytorch/examples' TransformerNet.

pytorch/examples ``fast_neural_style`` (the reference peer for the fast path) runs a
full-width Johnson network: 9x9/32, 3x3/64 s2, 3x3/128 s2, five residual blocks of
128, two nearest-upsample + 3x3 convolutions, 9x9/3, reflection padding and
``InstanceNorm2d(affine=True)`` after each convolution but the last.  The suite builds
that architecture in PyTorch with random weights (time does not depend on the
weights), in float32 and evaluation mode, under ``torch.inference_mode``, with as many
threads as TensorFlow uses, and times one image round-robin with our inference graph
(:mod:`nst_tf.inference`) of:

* ``single`` networks and ``multi`` networks (conditional instance norm over N styles)
  at the same width: the style input's cost;
* width 1.0 and the shipped width;
* float32 and bfloat16.

PyTorch is not a dependency of nst_tf; without it the peer row is left out, with a note.
"""

import numpy as np

from benchmarks.core import LoadMonitor, SuiteResult, Table, machine_info, stopwatch, time_side_by_side


def torch_transformer_net():
    """pytorch/examples' TransformerNet architecture as a ``torch.nn.Module`` (random weights), or None."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None

    def conv(c_in, c_out, kernel, stride=1, upsample=False, norm=True, relu=True):
        layers = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(c_out, affine=True))
        if relu:
            layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    class Residual(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.body = nn.Sequential(conv(channels, channels, 3), conv(channels, channels, 3, relu=False))

        def forward(self, x):
            return x + self.body(x)

    network = nn.Sequential(conv(3, 32, 9), conv(32, 64, 3, 2), conv(64, 128, 3, 2),
                            *[Residual(128) for _ in range(5)],
                            conv(128, 64, 3, upsample=True), conv(64, 32, 3, upsample=True),
                            conv(32, 3, 9, norm=False, relu=False))
    torch.manual_seed(0)
    return network.eval()


def run_peers_suite(size=512, widths=(1.0, 0.5), num_styles=13, warmup=2, repeats=7):
    """Times one ``size`` x ``size`` image through each network, round-robin.

    Args:
        size: int. Image side, pixels.
        widths: floats. Width multipliers of our networks.
        num_styles: int. Styles of the multi-style networks.
        warmup, repeats: as :func:`benchmarks.core.time_side_by_side`.

    Returns:
        SuiteResult with table ``peers``: median and best seconds per network and precision,
        and the speed relative to the PyTorch network (when PyTorch is installed).
    """
    import tensorflow as tf

    from nst_tf.inference import inference_graph
    from nst_tf.transformer import TransformerNet

    image = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    timers, notes = {}, []
    for width in widths:
        for kind in ("single", "multi"):
            names = [f"s{k}" for k in range(num_styles)] if kind == "multi" else None
            model = TransformerNet(width_multiplier=width, style_names=names)
            model.build((None, None, None, 3))
            style = {} if names is None else {"style": np.eye(num_styles, dtype=np.float32)[:1]}
            for precision in ("float32", "bfloat16"):
                graph = inference_graph(model, precision)
                timers[(kind, width, precision)] = stopwatch(lambda g=graph, s=style: g(image, **s).numpy())
    peer = torch_transformer_net()
    if peer is None:
        notes.append("PyTorch is not installed here (pip install torch): no peer row.")
    else:
        import torch

        torch.set_num_threads(tf.config.threading.get_intra_op_parallelism_threads() or _cores())
        pixels = torch.from_numpy(image.transpose(0, 3, 1, 2) / 127.5 - 1.0)

        def run_peer():
            with torch.inference_mode():
                peer(pixels).numpy()

        timers[("pytorch/examples", 1.0, "float32")] = stopwatch(run_peer)
        notes.append(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, float32, inference_mode, "
                     "random weights, NCHW input.")
    with LoadMonitor() as load:
        timings = time_side_by_side(timers, warmup=warmup, repeats=repeats)
        cores, _ = load.mark()
    reference = timings.get(("pytorch/examples", 1.0, "float32"))
    rows = []
    for (kind, width, precision), timing in timings.items():
        rows.append({"network": kind, "width": width, "precision": precision, "median_s": timing.median,
                     "best_s": timing.best,
                     "speed_vs_pytorch": reference.median / timing.median if reference else None,
                     "bg_cores": cores})
    columns = [("network", "network", "{}"), ("width", "width", "{}"), ("precision", "precision", "{}"),
               ("median_s", "median s", "{:.4f}"), ("best_s", "best s", "{:.4f}"),
               ("speed_vs_pytorch", "x pytorch/examples", "{:.2f}"), ("bg_cores", "bg cores", "{:.2f}")]
    notes.append(f"One {size}x{size} image, batch 1; each network timed {repeats} times round-robin after "
                 f"{warmup} warm-up calls; 'multi' networks take one-hot blend weights over {num_styles} styles.")
    settings = {"size": size, "widths": list(widths), "num_styles": num_styles, "repeats": repeats}
    return SuiteResult("fast-peers", machine_info(), settings,
                       {"peers": Table(f"Fast style networks at {size} px: ours and pytorch/examples' "
                                       "TransformerNet", columns, rows)}, notes)


def _cores():
    import os

    return len(os.sched_getaffinity(0))
