"""Benchmarks of the feed-forward style networks: inference, tiled memory, training, quality.

Each suite returns a :class:`benchmarks.core.SuiteResult`; ``scripts/benchmark.py`` runs it
under the subcommand name given here:

* ``fast-inference``: median seconds per image of :class:`~nst_tf.transformer.TransformerNet`
  at 256, 512 and 1024 px, float32 and bfloat16 (``load_transformer(path,
  dtype="mixed_bfloat16")``), through the library's :func:`~nst_tf.stylizer.stylize_image`
  (the compiled :class:`~nst_tf.inference.TransformerInference` graph) and, as baselines,
  through the Keras call of the model (eager, and in a ``tf.function``); conv GFLOP/s of
  the *architecture's* FLOPs against the float32 3x3 conv peak measured round-robin in
  the same window (the goal in BENCHMARKS.md), next to the FLOPs the library graph *executes*
  (fewer: sub-pixel upsampling convolutions; a blocked head); then, at one size, where
  the time goes (each convolution group alone) and what each change gains (variants).
* ``fast-memory``: peak resident memory (``ru_maxrss``) of a fresh process stylizing
  a 4096 x 4096 image with :func:`~nst_tf.stylizer.stylize_tiled`, and of untiled
  :func:`~nst_tf.stylizer.stylize_image` at 1024 / 2048 px for contrast.
* ``fast-training``: images per second of :class:`~nst_tf.training.FastStyleTrainer`
  steps (``train_on_batch``: the same compiled train function as ``fit``) at 256 px,
  batch 4, for each loss network, timed round-robin.
* ``fast-quality``: the shipped networks' perceptual loss on the content photos next to
  optimization-based stylization (:func:`nst_tf.optimize.stylize`, Adam from the
  content) of the same objective after 50, 100 and 300 iterations.

FLOP convention: that of :mod:`benchmarks.core` (a multiply-add is 2 FLOPs; conv
FLOPs ``2 * k_h * k_w * c_in/groups * c_out * B * h_out * w_out``).  TransformerNet is
a subclassed model, so :func:`benchmarks.core.conv_flops` (top-level layers of a
functional model) cannot see its convolutions; :func:`graph_conv_flops` counts the
``Conv2D`` ops of a traced ``tf.function`` instead, with their static shapes, which
includes the reflection padding to a multiple of 4 that the network really computes.
"""

import dataclasses
import gc
import json
import os
import pathlib
import re
import resource
import statistics
import subprocess
import sys
import time

import keras
import numpy as np
import psutil
import tensorflow as tf

from benchmarks import core
from benchmarks.core import (GIGA, PEAK_SHAPES, ConvFlops, ConvPeakProbe, LoadMonitor, SuiteResult, Table,
                             assets_dir, machine_info, peak_of, resolve_weights, stopwatch,
                             time_side_by_side)
from nst_tf import images, losses, optimize
from nst_tf.config import StyleConfig
from nst_tf.features import FeatureExtractor
from nst_tf.inference import TransformerInference, inference_graph
from nst_tf.training import DEFAULT_LAYERS, FastStyleTrainer
from nst_tf.stylizer import load_transformer, stylize_image, stylize_tiled
from nst_tf.transformer import ENCODER_BLOCKS, TransformerNet, with_dtype_policy

ROOT = pathlib.Path(__file__).resolve().parents[1]
"""The checkout holding these benchmarks (and the shipped saved_models/)."""
DEFAULT_MODELS = ("saved_models/styles/styles.keras",)
"""The shipped networks, relative to the repository root; suites use those that exist."""

PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16"}
"""Precision label -> ``load_transformer`` dtype policy."""

GOAL_PERCENT_OF_PEAK = 80.0
GOAL_BF16_SPEEDUP = 1.7
GOAL_TILED_GIB = 3.0


# ----------------------------------------------------------------------------- FLOPs


_COUNTED_OPS = ("Conv2D", "DepthwiseConv2dNative")
_UNCOUNTED_OPS = ("Conv3D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "Conv3DBackpropInputV2",
                  "DepthwiseConv2dNativeBackpropInput", "PartitionedCall", "StatefulPartitionedCall", "While",
                  "StatelessWhile")


def graph_conv_flops(function, input_shape, dtype=tf.float32):
    """Forward FLOPs of every 2-D convolution a function runs, from its traced graph.

    Works for any callable of one image tensor, subclassed Keras models included:
    ``function`` is traced once with a fully static ``input_shape`` (nothing is
    computed) and each ``Conv2D`` / ``DepthwiseConv2dNative`` op of the graph is
    counted as ``2 * prod(kernel_shape) * B * h_out * w_out`` (see
    :class:`benchmarks.core.ConvFlops`), with the shapes TensorFlow inferred.

    Args:
        function: callable ``images -> tensors`` (e.g. ``lambda x: model(x)``).
        input_shape: tuple ``(B, H, W, C)``, pixels.
        dtype: tf.DType of the traced input. Defaults to float32.

    Returns:
        list of :class:`benchmarks.core.ConvFlops` in graph order; ``layer`` is the op name.

    Raises:
        ValueError: a convolution shape is not static, or the graph holds ops this
            counter does not count (3-D or gradient convolutions, nested function calls
            or loops whose convolutions would be missed).
    """
    concrete = tf.function(function).get_concrete_function(tf.TensorSpec(tuple(input_shape), dtype))
    counts = []
    for op in concrete.graph.get_operations():
        if op.type in _UNCOUNTED_OPS:
            raise ValueError(f"graph_conv_flops counts Conv2D and DepthwiseConv2dNative ops of one graph only. "
                             f"Received: op {op.name!r} of type {op.type}")
        if op.type not in _COUNTED_OPS:
            continue
        kernel = op.inputs[1].shape.as_list()
        output = op.outputs[0].shape.as_list()
        if None in kernel or None in output:
            raise ValueError(f"Convolution shapes are not static. Received: op {op.name!r}, kernel {kernel}, "
                             f"output {output}")
        counts.append(ConvFlops(op.name, tuple(kernel), tuple(output),
                                2 * int(np.prod(kernel)) * output[0] * output[1] * output[2]))
    return counts


def transformer_conv_flops(model, input_shape):
    """Forward conv FLOPs of a TransformerNet (:func:`graph_conv_flops` of its call), list of ConvFlops."""
    return graph_conv_flops(lambda images: model(images, training=False), input_shape)


def executed_conv_flops(model, input_shape, **options):
    """Forward conv FLOPs the library's inference graph executes for one image, list of ConvFlops.

    Counts the graph of :meth:`nst_tf.inference.TransformerInference.forward_one_image`
    (the same ops as :func:`~nst_tf.stylizer.stylize_image`, without the per-image
    loop): 2x2 phase convolutions instead of the upsampling 3x3 ones, the blocked head.

    Args:
        model: TransformerNet. input_shape: ``(1, H, W, 3)``.
        **options: :class:`~nst_tf.inference.TransformerInference` options.
    """
    return graph_conv_flops(TransformerInference(model, **options).forward_one_image, input_shape)


def _conv_group(op_name):
    """``conv1``, ``conv2``, ``conv3``, ``res``, ``up1``, ``up2``, ``head`` from a TransformerNet op name."""
    match = re.search(r"(?:^|/)(conv\d+|res\d+|up\d+|head)(?:_\d+)?/", op_name)
    if not match:
        return op_name
    return "res" if match.group(1).startswith("res") else match.group(1)


def training_step_flops(transformer, extractor, batch, size, style_layers):
    """Conv and Gram FLOPs of one FastStyleTrainer step (the convention of the ``fast-training`` suite).

    * TransformerNet: forward, weight gradient, and input gradient of every conv
      except the first (its input is the data): ``3 F_T - F_conv1`` per image.
    * Loss network (frozen): forward over the ``2B`` concatenated photos and outputs,
      and the input gradient over the same ``2B`` batch (TensorFlow back-propagates
      the whole concatenated tensor; the photo half's gradient is zero): ``4 B F_L``.
    * Gram matrices of the ``B`` outputs at the style layers, forward and the
      one-matmul gradient: ``2 x gram_flops`` (not in the conv count).

    Returns:
        dict of ints ``transformer_conv_flops``, ``loss_network_conv_flops``,
        ``step_conv_flops``, ``step_gram_flops``.
    """
    transformer_convs = transformer_conv_flops(transformer, (batch, size, size, 3))
    forward_t = sum(c.flops for c in transformer_convs)
    transformer_step = 3 * forward_t - transformer_convs[0].flops
    forward_l = sum(c.flops for c in core.conv_flops(extractor.network, (1, size, size, 3)))
    loss_step = 4 * batch * forward_l
    shapes = extractor.network.compute_output_shape((batch, size, size, 3))
    if len(extractor.layer_names) == 1:
        shapes = [shapes]
    by_name = dict(zip(extractor.layer_names, shapes))
    gram = sum(core.gram_flops(by_name[name]) for name in style_layers)
    return {"transformer_conv_flops": transformer_step, "loss_network_conv_flops": loss_step,
            "step_conv_flops": transformer_step + loss_step, "step_gram_flops": 2 * gram}


# ----------------------------------------------------------------------------- models


def existing_models(paths=DEFAULT_MODELS):
    """The paths of ``paths`` (relative ones to the repository root) that are files, as pathlib.Paths."""
    found = []
    for path in paths:
        path = pathlib.Path(path)
        path = path if path.is_absolute() else ROOT / path
        if path.is_file():
            found.append(path)
    return found


def _single_style(paths):
    """The single-style networks among `paths` (the inference and memory suites call a network without a style)."""
    return [path for path in paths if load_transformer(path).style_names is None]


def load_inference_models(model_path="auto"):
    """The network of a benchmark in each precision.

    Args:
        model_path: a ``.keras`` path of a single-style network, ``"auto"`` (the first
            single-style network of :data:`DEFAULT_MODELS` that exists, else random
            weights), or None (random weights, seed 0, full width; the compute does not
            depend on the values).

    Returns:
        ``({"float32": TransformerNet, "bfloat16": TransformerNet}, label)``; file models
        go through :func:`load_transformer` (``dtype="mixed_bfloat16"`` for bfloat16).
    """
    if model_path == "auto":
        found = _single_style(existing_models())
        model_path = found[0] if found else None
    if model_path is None:
        keras.utils.set_random_seed(0)
        model = TransformerNet()
        model.build((None, None, None, 3))
        return {"float32": model, "bfloat16": with_dtype_policy(model, "mixed_bfloat16")}, "random weights"
    path = pathlib.Path(model_path)
    models = {label: load_transformer(path, dtype=policy) for label, policy in PRECISIONS.items()}
    return models, _display_path(path)


def _display_path(path):
    path = pathlib.Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def compiled_call(model, jit_compile=False):
    """``tf.function`` of ``model(images, training=False)`` with one signature ``[None, None, None, 3]`` float32.

    One trace serves every size (no retracing per shape); what a serving signature does.
    """
    return tf.function(lambda images: model(images, training=False), jit_compile=jit_compile,
                       input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])


def _photo_like(shape, seed=0):
    """Smooth random float32 images in [0, 255] (upsampled coarse noise): generated 'photos'."""
    batch, height, width, _ = shape
    coarse = np.random.default_rng(seed).uniform(0, 255, (batch, max(2, height // 16), max(2, width // 16), 3))
    return tf.clip_by_value(tf.image.resize(coarse.astype("float32"), (height, width)), 0, 255).numpy()


# ----------------------------------------------------------------------------- variants


@dataclasses.dataclass(frozen=True)
class InferenceVariant:
    """One way of running the TransformerNet forward pass, for the what-if table.

    Attributes:
        name: str. description: str.
        jit_compile: bool. XLA (the model's own call only).
        library: tuple of ``(name, value)`` or None. Not None: the library's
            :class:`~nst_tf.inference.TransformerInference` with these options; None:
            the model's own call in a ``tf.function``.
    """

    name: str
    description: str
    jit_compile: bool = False
    library: tuple = None


VARIANTS = {v.name: v for v in (
    InferenceVariant("model", "the model's own call in a tf.function (baseline)"),
    InferenceVariant("model-xla", "the model's own call, tf.function(jit_compile=True)", jit_compile=True),
    InferenceVariant("library", "nst_tf.inference: FusedBatchNorm instance norm, no conv bias, concat pads, "
                     "2x2 sub-pixel phase convs for the upsampling, head as stride-4 12x12 conv + depth_to_space",
                     library=()),
    InferenceVariant("library-no-phase", "library, but upsample + 3x3 conv", library=(("phase_upsampling", False),)),
    InferenceVariant("library-head1", "library, but the plain 9x9x32x3 head", library=(("head_block", 1),)),
    InferenceVariant("library-head2", "library, head as stride-2 10x10 conv to 12 channels + depth_to_space(2)",
                     library=(("head_block", 2),)),
)}
DEFAULT_VARIANTS = ("model", "library", "library-no-phase", "library-head1", "library-head2")
"""The variants timed by default (the others: by name)."""


def variant_function(model, variant):
    """The compiled forward pass of ``variant`` (signature ``[None, None, None, 3]`` float32)."""
    if variant.library is not None:
        graph = TransformerInference(model, **dict(variant.library))
        return lambda images: graph.stylize(images)[0]
    return compiled_call(model, variant.jit_compile)


# ----------------------------------------------------------------------------- inference suite


def _bf16_peak_timers(shapes):
    """Forward bfloat16 3x3 convs of the peak shapes, ``{name: timer}`` (same method as ConvPeakProbe)."""
    @tf.function
    def forward(x, kernel):
        return tf.nn.conv2d(x, kernel, 1, "SAME")[0, 0, 0, :1]

    rng = np.random.default_rng(0)
    timers = {}
    for index, (height, width, c_in, c_out) in enumerate(shapes):
        x = tf.cast(rng.standard_normal((1, height, width, c_in), np.float32), tf.bfloat16)
        kernel = tf.cast(rng.standard_normal((3, 3, c_in, c_out), np.float32) / np.sqrt(9 * c_in), tf.bfloat16)
        timers[f"peak-bf16-{index}"] = stopwatch(lambda x=x, k=kernel: forward(x, k).numpy())
    return timers


def _bf16_peak(timings, shapes):
    best = None
    for index, (height, width, c_in, c_out) in enumerate(shapes):
        name = f"peak-bf16-{index}"
        if name in timings:
            value = 2 * 9 * c_in * c_out * height * width / timings[name].median / GIGA
            best = value if best is None else max(best, value)
    return best


def _group_timers(model, size, label):
    """Each conv group of the network alone: ``{f"{label}:{group}": timer}`` and ``{group: info}``."""
    compute = tf.as_dtype(model.compute_dtype)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, size, size, 3), tf.float32))
    groups = {}
    for op in concrete.graph.get_operations():
        if op.type == "Conv2D":
            groups.setdefault(_conv_group(op.name), []).append(
                (tuple(op.inputs[0].shape.as_list()), tuple(op.inputs[1].shape.as_list()),
                 tuple(op.get_attr("strides")), tuple(op.outputs[0].shape.as_list())))
    rng = np.random.default_rng(0)
    timers, info = {}, {}
    for group, specs in groups.items():
        inputs = [tf.cast(rng.standard_normal(x_shape, np.float32), compute) for x_shape, _, _, _ in specs]
        kernels = [tf.cast(rng.standard_normal(k_shape, np.float32) / np.sqrt(np.prod(k_shape[:3])), compute)
                   for _, k_shape, _, _ in specs]
        strides = [s for _, _, s, _ in specs]

        @tf.function
        def convs(inputs, kernels, strides=tuple(strides)):
            return [tf.nn.conv2d(x, k, s, "VALID")[0, 0, 0, :1] for x, k, s in zip(inputs, kernels, strides)]

        timers[f"{label}:{group}"] = stopwatch(
            lambda convs=convs, inputs=inputs, kernels=kernels: [t.numpy() for t in convs(inputs, kernels)])
        _, k_shape, s, out = specs[0]
        info[group] = {"count": len(specs), "kernel": "x".join(map(str, k_shape)), "stride": s[1],
                       "output": "x".join(map(str, out[1:])),
                       "flops": sum(2 * int(np.prod(k)) * o[0] * o[1] * o[2] for _, k, _, o in specs)}
    return timers, info


_INFERENCE_COLUMNS = [
    ("size", "px", "{}"),
    ("precision", "precision", "{}"),
    ("path", "call", "{}"),
    ("conv_gflop", "arch. conv GFLOP", "{:.1f}"),
    ("executed_gflop", "executed conv GFLOP", "{:.1f}"),
    ("median_s", "s / image (median)", "{:.4f}"),
    ("best_s", "min s", "{:.4f}"),
    ("gflops", "arch. GFLOP / s", "{:.0f}"),
    ("executed_gflops", "executed GFLOP/s", "{:.0f}"),
    ("peak_gflops", "fp32 peak (same window)", "{:.0f}"),
    ("percent_of_peak", "% of fp32 peak (arch.)", "{:.1f}"),
    ("bf16_peak_gflops", "bf16 peak (same window)", "{:.0f}"),
    ("speedup", "x faster than float32", "{:.2f}"),
    ("background_cores", "bg cores", "{:.2f}"),
]

_GROUP_COLUMNS = [
    ("group", "conv group", "{}"),
    ("count", "convs", "{}"),
    ("kernel", "kernel", "{}"),
    ("stride", "stride", "{}"),
    ("output", "output", "{}"),
    ("gflop", "GFLOP", "{:.2f}"),
    ("flop_share", "% of FLOPs", "{:.1f}"),
    ("float32_s", "float32 s", "{:.4f}"),
    ("float32_gflops", "float32 GFLOP/s", "{:.0f}"),
    ("time_share", "% of fp32 conv time", "{:.1f}"),
    ("bfloat16_s", "bfloat16 s", "{:.4f}"),
    ("bfloat16_gflops", "bfloat16 GFLOP/s", "{:.0f}"),
]

_VARIANT_COLUMNS = [
    ("variant", "variant", "{}"),
    ("description", "what changes", "{}"),
    ("float32_s", "float32 s", "{:.4f}"),
    ("float32_vs_model", "fp32 time / model", "{:.3f}"),
    ("executed_gflop", "executed conv GFLOP", "{}"),
    ("float32_percent", "fp32 % of peak (arch. FLOPs)", "{:.1f}"),
    ("bfloat16_s", "bfloat16 s", "{:.4f}"),
    ("bfloat16_vs_model", "bf16 time / model", "{:.3f}"),
    ("speedup", "bf16 x faster than fp32 model", "{:.2f}"),
    ("own_speedup", "bf16 x faster than same variant fp32", "{:.2f}"),
    ("diff", "mean |diff| vs fp32 model, px (fp32 / bf16)", "{}"),
]


LIBRARY_PATH = "stylize_image (library)"
"""Label of the library's own call in the ``fast-inference`` table (the goal is checked on it)."""
_PATHS = ((LIBRARY_PATH, "library"), ("Keras call, tf.function", "function"), ("Keras call, eager", "eager"))


def run_inference_suite(model_path="auto", sizes=(256, 512, 1024), warmup=2, repeats=5, peak=True,
                        breakdown_size=512, variants=DEFAULT_VARIANTS, peak_shapes=PEAK_SHAPES):
    """Seconds per image, conv GFLOP/s and % of the conv peak; where the time goes.

    For each size, times round-robin (:func:`~benchmarks.core.time_side_by_side`) the
    float32 and bfloat16 networks, each through the library's
    :func:`~nst_tf.stylizer.stylize_image` (its compiled inference graph) and, as
    baselines, through the model's Keras call (eager, as ``stylize_image`` did before,
    and :func:`compiled_call`), together with the float32 peak probe
    (:class:`~benchmarks.core.ConvPeakProbe`) and bfloat16 3x3 convs of the same
    shapes, so that every row is compared with a peak measured under the same
    background load.  GFLOP/s and % of peak use the architecture's conv FLOPs (what the
    network computes; :func:`transformer_conv_flops`) for every row; the FLOPs the
    library graph executes (:func:`executed_conv_flops`) are listed beside them.  At
    ``breakdown_size`` it then times each conv group of the network alone (float32 and
    bfloat16) and the :data:`VARIANTS`.

    Args:
        model_path: see :func:`load_inference_models`.
        sizes: ints, square image sides in pixels.
        warmup, repeats: ints. Untimed and timed calls per timer.
        peak: bool. Time the peak probes beside the networks.
        breakdown_size: int or None. Size of the conv-group and variant tables; None skips them.
        variants: names in :data:`VARIANTS` (empty: no variant table).
        peak_shapes: shapes ``(H, W, C_in, C_out)`` of the peak probes.

    Returns:
        SuiteResult with tables ``inference``, and ``groups`` and ``variants`` when
        ``breakdown_size`` is set.

    Raises:
        ValueError: an unknown variant name.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"Unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}. "
                         f"Received: variants={list(variants)}")
    machine = machine_info()
    models, label = load_inference_models(model_path)
    functions = {precision: compiled_call(model) for precision, model in models.items()}
    probe = ConvPeakProbe(peak_shapes) if peak else None
    peak_timers = {**probe.timers(), **_bf16_peak_timers(peak_shapes)} if peak else {}
    rows, tables = [], {}
    with LoadMonitor(0.5) as load:
        for size in sizes:
            image = _photo_like((1, size, size, 3), seed=size)
            tensor = tf.constant(image)
            shape = (1, size, size, 3)
            flops = sum(c.flops for c in transformer_conv_flops(models["float32"], shape))
            executed = sum(c.flops for c in executed_conv_flops(models["float32"], shape))
            timers = {}
            for precision, model in models.items():
                timers[f"{precision}:library"] = stopwatch(lambda model=model: stylize_image(model, image))
                timers[f"{precision}:function"] = stopwatch(
                    lambda function=functions[precision]: function(tensor).numpy())
                timers[f"{precision}:eager"] = stopwatch(
                    lambda model=model: np.asarray(model(tensor, training=False)))
            timers.update(peak_timers)
            load.mark()
            timings = time_side_by_side(timers, warmup, repeats)
            background, top = load.mark()
            fp32_peak = peak_of(probe.rows(timings))[0] if peak else None
            bf16_peak = _bf16_peak(timings, peak_shapes) if peak else None
            for path_label, path in _PATHS:
                base = timings[f"float32:{path}"].median
                run = flops if path != "library" else executed
                for precision in models:
                    timing = timings[f"{precision}:{path}"]
                    gflops = flops / timing.median / GIGA
                    rows.append({
                        "size": size, "precision": precision, "path": path_label, "conv_gflop": flops / GIGA,
                        "executed_gflop": run / GIGA, "median_s": timing.median, "best_s": timing.best,
                        "all_s": list(timing.seconds), "gflops": gflops,
                        "executed_gflops": run / timing.median / GIGA, "peak_gflops": fp32_peak,
                        "percent_of_peak": 100 * gflops / fp32_peak if fp32_peak else None,
                        "bf16_peak_gflops": bf16_peak, "speedup": base / timing.median,
                        "vs_keras_function": timings[f"{precision}:function"].median / timing.median,
                        "background_cores": background, "background_top": top,
                    })
        tables["inference"] = Table(f"TransformerNet inference, batch 1, square images ({label})",
                                    _INFERENCE_COLUMNS, rows)
        if breakdown_size:
            tables["groups"], group_notes = _group_table(models, breakdown_size, warmup, repeats, load, probe)
            if variants:
                tables["variants"] = _variant_table(models, breakdown_size, variants, warmup, repeats, load,
                                                    probe)
    notes = _inference_notes(rows, label, breakdown_size and group_notes)
    settings = {"model": label, "sizes": list(sizes), "warmup": warmup, "repeats": repeats,
                "breakdown_size": breakdown_size}
    return SuiteResult("fast-inference", machine, settings, tables, notes)


def _group_table(models, size, warmup, repeats, load, probe=None):
    timers, info = {}, {}
    for precision, model in models.items():
        group_timers, info = _group_timers(model, size, precision)
        timers.update(group_timers)
    tensor = tf.constant(_photo_like((1, size, size, 3), seed=size))
    for precision, model in models.items():
        function = compiled_call(model)
        timers[f"{precision}:network"] = stopwatch(lambda function=function: function(tensor).numpy())
    if probe is not None:
        timers.update(probe.timers())
    load.mark()
    steal = _steal_seconds()
    timings = time_side_by_side(timers, warmup, repeats)
    background, _ = load.mark()
    steal = _steal_seconds() - steal
    window_peak = peak_of(probe.rows(timings))[0] if probe is not None else None
    total_flops = sum(i["flops"] for i in info.values())
    conv_time = {p: sum(timings[f"{p}:{g}"].median for g in info) for p in models}
    rows = []
    for group, item in info.items():
        row = {"group": group, **{k: item[k] for k in ("count", "kernel", "stride", "output")},
               "gflop": item["flops"] / GIGA, "flop_share": 100 * item["flops"] / total_flops}
        for precision in models:
            seconds = timings[f"{precision}:{group}"].median
            row[f"{precision}_s"] = seconds
            row[f"{precision}_gflops"] = item["flops"] / seconds / GIGA
        row["time_share"] = 100 * row["float32_s"] / conv_time["float32"]
        rows.append(row)
    totals = {"group": "all convs", "count": sum(i["count"] for i in info.values()), "kernel": "", "stride": "",
              "output": "", "gflop": total_flops / GIGA, "flop_share": 100.0, "time_share": 100.0}
    network = {"group": "whole network (tf.function)", "count": None, "kernel": "", "stride": "", "output": "",
               "gflop": total_flops / GIGA, "flop_share": None, "time_share": None}
    for precision in models:
        totals[f"{precision}_s"] = conv_time[precision]
        totals[f"{precision}_gflops"] = total_flops / conv_time[precision] / GIGA
        seconds = timings[f"{precision}:network"].median
        network[f"{precision}_s"] = seconds
        network[f"{precision}_gflops"] = total_flops / seconds / GIGA
    rows += [totals, network]
    for row in rows:
        row["background_cores"] = background
    non_conv = {p: 1 - conv_time[p] / timings[f"{p}:network"].median for p in models}
    notes = {"non_conv_share": non_conv, "background": background, "conv_time": conv_time,
             "network_time": {p: timings[f"{p}:network"].median for p in models}}
    table = Table(f"Where the time goes at {size} px: each conv group alone (tf.nn.conv2d on inputs of the "
                  f"network's padded shapes), side by side with the whole network (fp32 peak in the same window: "
                  f"{window_peak and round(window_peak)} GFLOP/s; bg cores {background:.2f}; "
                  f"hypervisor steal {steal:.1f} core-s)", _GROUP_COLUMNS, rows)
    return table, notes


def _steal_seconds():
    """CPU time stolen by the hypervisor so far, core-seconds (0.0 where the system does not report it).

    Other virtual machines on the same host are invisible to :class:`~benchmarks.core.LoadMonitor`.
    """
    return float(getattr(psutil.cpu_times(), "steal", 0.0))


def _variant_table(models, size, names, warmup, repeats, load, probe):
    image = tf.constant(_photo_like((1, size, size, 3), seed=size + 1))
    flops = sum(c.flops for c in transformer_conv_flops(models["float32"], (1, size, size, 3)))
    timers, outputs = {}, {}
    names = ["model"] + [n for n in names if n != "model"]
    for name in names:
        for precision, model in models.items():
            function = variant_function(model, VARIANTS[name])
            outputs[(name, precision)] = function(image).numpy()
            timers[f"{name}:{precision}"] = stopwatch(lambda function=function: function(image).numpy())
    if probe is not None:
        timers.update(probe.timers())
    load.mark()
    timings = time_side_by_side(timers, warmup, repeats)
    background, _ = load.mark()
    window_peak = peak_of(probe.rows(timings))[0] if probe is not None else None
    base = {p: timings[f"model:{p}"].median for p in models}
    rows = []
    shape = (1, size, size, 3)
    for name in names:
        f32, bf16 = timings[f"{name}:float32"].median, timings[f"{name}:bfloat16"].median
        errors = [np.abs(outputs[(name, p)] - outputs[("model", "float32")]) for p in models]
        diffs = [float(np.mean(e)) for e in errors]
        variant = VARIANTS[name]
        if variant.library is not None:
            executed = sum(c.flops for c in executed_conv_flops(models["float32"], shape, **dict(variant.library)))
        else:  # The Keras call runs the architecture's convs.
            executed = flops
        rows.append({"variant": name, "description": variant.description,
                     "executed_gflop": "" if executed is None else f"{executed / GIGA:.1f}",
                     "float32_s": f32, "float32_vs_model": f32 / base["float32"],
                     "float32_percent": 100 * flops / f32 / GIGA / window_peak if window_peak else None,
                     "bfloat16_s": bf16, "bfloat16_vs_model": bf16 / base["bfloat16"],
                     "speedup": base["float32"] / bf16, "own_speedup": f32 / bf16,
                     "diff": " / ".join(f"{d:.2g}" for d in diffs), "mean_abs_diff": diffs,
                     "max_abs_diff": [float(np.max(e)) for e in errors], "peak_gflops": window_peak,
                     "background_cores": background})
    return Table(f"What-if variants of the forward pass at {size} px (compiled, timed side by side; "
                 f"fp32 peak in the same window: {window_peak and round(window_peak)} GFLOP/s; "
                 f"bg cores {background:.2f})", _VARIANT_COLUMNS, rows)


def _inference_notes(rows, label, groups):
    notes = [
        f"Network: {label}. '{LIBRARY_PATH}' is nst_tf.stylizer.stylize_image: the model's cached compiled "
        "inference graph (nst_tf.inference.TransformerInference, one tf.function with input signature "
        "[None, None, None, 3]), NumPy in and out. Baselines: the model's Keras call, eager (what stylize_image "
        "ran before) and in one tf.function (benchmarks.fast.compiled_call). Input: a smooth random 'photo'.",
        "arch. conv GFLOP: forward FLOPs of the network's 16 convolutions as the architecture defines them, at the "
        "reflection-padded size it computes (graph_conv_flops on a traced Keras call; tested against a hand "
        "count). 'arch. GFLOP / s' = arch. conv GFLOP / median seconds, for every row; '% of fp32 peak (arch.)' "
        "divides it by the best float32 3x3 conv throughput measured round-robin in the same window "
        "(ConvPeakProbe): the goal in BENCHMARKS.md is stated on this figure. 'bf16 peak' is the same 3x3 convs in bfloat16.",
        "executed conv GFLOP: the FLOPs the library graph really runs (executed_conv_flops): the two upsampling "
        "3x3 convs become 2x2 sub-pixel phase convs on the low-resolution input (16 instead of 36 multiply-adds "
        "per low-res pixel and channel pair: 19.3 -> 8.7 GFLOP at 512 px) and the 9x9x32x3 head a stride-4 "
        "12x12x32x48 conv + depth_to_space (1.78x its FLOPs: 4.1 -> 7.2 GFLOP at 512 px). 'executed GFLOP/s' "
        "is how fast the hardware ran; the Keras rows execute the architecture's FLOPs.",
        "Instance normalization, reflection pads, upsampling, tanh are not counted (memory-bound).",
    ]
    goal = [r for r in rows if r["size"] == 512]
    if goal:
        by = {(r["precision"], r["path"]): r for r in goal}
        for path in [label for label, _ in _PATHS]:
            f32, bf16 = by.get(("float32", path)), by.get(("bfloat16", path))
            if f32 and bf16 and f32["percent_of_peak"] is not None:
                which = "GOAL CHECK" if path == LIBRARY_PATH else "Baseline"
                notes.append(
                    f"{which} at 512 px, {path}: float32 {f32['median_s']:.3f} s = {f32['percent_of_peak']:.1f}% of "
                    f"the fp32 peak in architecture FLOPs (goal >= {GOAL_PERCENT_OF_PEAK:.0f}%: "
                    f"{'met' if f32['percent_of_peak'] >= GOAL_PERCENT_OF_PEAK else 'NOT met'}; executed FLOPs: "
                    f"{100 * f32['executed_gflops'] / f32['peak_gflops']:.1f}%); bfloat16 "
                    f"{bf16['median_s']:.3f} s = {bf16['speedup']:.2f}x faster than float32 on the same path (goal >= "
                    f"{GOAL_BF16_SPEEDUP}x: {'met' if bf16['speedup'] >= GOAL_BF16_SPEEDUP else 'NOT met'}).")
        library, keras_function = by.get(("float32", LIBRARY_PATH)), by.get(("float32", "Keras call, tf.function"))
        if library and keras_function:
            notes.append(f"At 512 px the library call is {library['vs_keras_function']:.2f}x (float32) and "
                         f"{by[('bfloat16', LIBRARY_PATH)]['vs_keras_function']:.2f}x (bfloat16) faster than the "
                         f"Keras call in a tf.function of the same precision.")
    if groups:
        share = groups["non_conv_share"]
        notes.append(
            "Outside the convolutions of the Keras call (instance norm, pads, upsampling, casts; network time minus "
            f"the conv groups timed alone): {100 * share['float32']:.0f}% of the float32 network time and "
            f"{100 * share['bfloat16']:.0f}% of the bfloat16 one at the breakdown size.")
    return notes


# ----------------------------------------------------------------------------- memory suite


def run_memory_suite(model_path="auto", image_size=4096, tiles=(512, 1024), overlap=32, untiled_sizes=(1024, 2048),
                     precision="float32"):
    """Peak resident memory of tiled and untiled stylization, each case in a fresh process.

    Args:
        model_path: see :func:`load_inference_models`.
        image_size: int. Side of the square image of the tiled cases, pixels.
        tiles: ints. Tile sides of :func:`~nst_tf.stylizer.stylize_tiled`.
        overlap: int. Tile overlap, pixels.
        untiled_sizes: ints. Sides of the untiled :func:`~nst_tf.stylizer.stylize_image` cases.
        precision: ``"float32"`` or ``"bfloat16"``.

    Returns:
        SuiteResult with table ``memory``: per case ``peak_gib`` (``ru_maxrss`` of the
        process, everything included), ``before_gib`` (after imports, loading the model and
        creating the image), ``seconds`` of the stylization, ``goal`` (tiled: under
        :data:`GOAL_TILED_GIB`).

    Raises:
        RuntimeError: a worker process failed (with the end of its stderr).
    """
    if model_path == "auto":
        found = _single_style(existing_models())
        model_path = str(found[0]) if found else None
    cases = [{"mode": "tiled", "size": image_size, "tile": tile} for tile in tiles]
    cases += [{"mode": "untiled", "size": size, "tile": None} for size in untiled_sizes]
    rows = []
    with LoadMonitor(0.5) as monitor:
        for case in cases:
            request = {**case, "overlap": overlap, "model": None if model_path is None else str(model_path),
                       "precision": precision}
            env = dict(os.environ)
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
            process = subprocess.run(
                [sys.executable, "-c", "from benchmarks.fast import _memory_worker; _memory_worker()",
                 json.dumps(request)], capture_output=True, text=True, env=env, cwd=str(ROOT))
            if process.returncode != 0:
                raise RuntimeError(f"Memory worker for {case} exited with code {process.returncode}:\n"
                                   f"{process.stderr[-2000:]}")
            result = json.loads(process.stdout.strip().splitlines()[-1])
            row = {**case, "overlap": overlap if case["mode"] == "tiled" else None, "precision": precision, **result}
            row["goal"] = (("met" if result["peak_gib"] < GOAL_TILED_GIB else "NOT met")
                           if case["mode"] == "tiled" else None)
            row["background_cores"], row["background_top"] = monitor.mark()
            rows.append(row)
    label = "random weights" if model_path is None else _display_path(model_path)
    table = Table(f"Peak resident memory, one fresh process per case ({label}, {precision})",
                  [("mode", "mode", "{}"), ("size", "image px", "{}"), ("tile", "tile", "{}"),
                   ("overlap", "overlap", "{}"), ("tiles", "tiles run", "{}"), ("before_gib", "before GiB", "{:.2f}"),
                   ("peak_gib", "peak GiB (ru_maxrss)", "{:.2f}"), ("seconds", "stylize s", "{:.1f}"),
                   ("goal", f"< {GOAL_TILED_GIB:.0f} GiB", "{}"), ("background_cores", "bg cores", "{:.2f}")], rows)
    notes = [
        "Each case runs in a fresh Python process: import TensorFlow, load the network, create a random "
        "float32 image ('before' = ru_maxrss at that point), stylize once, read ru_maxrss (the process's "
        "high-water mark, so it includes TensorFlow itself, the model and the input image).",
        f"Tiled: stylize_tiled(tile, overlap={overlap}), thumbnail statistics at the default thumbnail size "
        "(= tile); untiled: stylize_image of the whole image in one pass.",
    ]
    settings = {"model": label, "image_size": image_size, "tiles": list(tiles), "overlap": overlap,
                "untiled_sizes": list(untiled_sizes), "precision": precision}
    return SuiteResult("fast-memory", machine_info(), settings, {"memory": table}, notes)


def _memory_worker():
    """One case of :func:`run_memory_suite`; argv[1] is its JSON request; prints one JSON line."""
    request = json.loads(sys.argv[1])
    policy = PRECISIONS[request["precision"]]
    if request["model"]:
        model = load_transformer(request["model"], dtype=policy)
    else:
        model = load_inference_models(None)[0][request["precision"]]
    size = request["size"]
    image = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32) * np.float32(255)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    calls = {"n": 0}
    counting = _CountingModel(inference_graph(model), calls)  # The graph stylize_image runs for a TransformerNet.
    start = time.perf_counter()
    if request["mode"] == "tiled":
        output = stylize_tiled(counting, image, tile=request["tile"], overlap=request["overlap"])
    else:
        output = stylize_image(counting, image)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    ok = bool(output.shape == image.shape and np.all(np.isfinite(output)))
    tiles = calls["n"] - 1 if request["mode"] == "tiled" else calls["n"]  # minus the thumbnail pass.
    print(json.dumps({"before_gib": before, "peak_gib": peak, "seconds": seconds, "tiles": tiles, "ok": ok}))


class _CountingModel:
    """Forwards calls to a model and counts them (tiles run)."""

    def __init__(self, model, calls):
        self.model, self.calls = model, calls

    def __call__(self, *args, **kwargs):
        self.calls["n"] += 1
        return self.model(*args, **kwargs)


# ----------------------------------------------------------------------------- training suite


LOSS_NETWORKS = ("vgg16", "vgg19", "squeezenet1_1")


def build_trainer(loss_network, weights=None, precision="float32", size=256, style_size=256, seed=0,
                  transformer_config=None):
    """A compiled FastStyleTrainer as :func:`nst_tf.training.train` builds it (generated style image).

    Args:
        transformer_config: optional TransformerNet arguments (``filters``,
            ``num_residual_blocks``); None: Johnson's network.

    Returns:
        FastStyleTrainer, built at ``size``.
    """
    policy = PRECISIONS[precision]
    keras.utils.set_random_seed(seed)
    extractor = FeatureExtractor(sum(DEFAULT_LAYERS[loss_network], ()), backbone=loss_network, weights=weights,
                                 dtype=policy)
    style = _photo_like((1, style_size, style_size, 3), seed=seed + 7)
    trainer = FastStyleTrainer(TransformerNet(**(transformer_config or {}), dtype=policy), style,
                               feature_extractor=extractor)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer(tf.zeros((1, size, size, 3)))
    return trainer


_TRAINING_COLUMNS = [
    ("loss_network", "loss network", "{}"),
    ("weights", "weights", "{}"),
    ("precision", "precision", "{}"),
    ("step_s", "s / step (median)", "{:.3f}"),
    ("best_s", "min s", "{:.3f}"),
    ("images_per_second", "images/s", "{:.2f}"),
    ("transformer_gflop", "transformer conv GFLOP", "{:.0f}"),
    ("loss_network_gflop", "loss-net conv GFLOP", "{:.0f}"),
    ("gram_gflop", "Gram GFLOP", "{:.1f}"),
    ("gflops", "conv GFLOP/s", "{:.0f}"),
    ("percent_of_peak", "% of fp32 peak", "{:.1f}"),
    ("background_cores", "bg cores", "{:.2f}"),
]


def run_training_suite(loss_networks=LOSS_NETWORKS, size=256, batch_size=4, warmup=2, repeats=5,
                       precisions=("float32", "bfloat16"), squeezenet_weights="auto", peak=True,
                       peak_shapes=PEAK_SHAPES, transformer_config=None):
    """Training images per second for each loss network, timed round-robin.

    Every trainer is built as :func:`nst_tf.training.train` builds it (the loss network
    truncated at its deepest default layer, ``mixed_bfloat16`` for ``bfloat16``, Adam
    1e-3); one timed repetition is one ``train_on_batch`` of a generated batch (Keras'
    compiled train function, the one ``fit`` runs, plus reading the losses back).

    Args:
        loss_networks: names (``vgg16``, ``vgg19``: random weights, the real compute;
            ``squeezenet1_1``: ImageNet weights when present, see :func:`~benchmarks.core.resolve_weights`).
        size: int, crop side in pixels. batch_size: int.
        warmup, repeats: ints, steps per trainer (the first traces the train function).
        precisions: ``"float32"`` and/or ``"bfloat16"``.
        squeezenet_weights: ``"auto"``, None or a path.
        peak: bool. Time the float32 peak probe in the same window.
        peak_shapes: shapes of the peak probe.
        transformer_config: optional TransformerNet arguments (tests: a smaller network).

    Returns:
        SuiteResult with table ``training``.
    """
    machine = machine_info()
    photos = _photo_like((batch_size, size, size, 3), seed=3)
    trainers, info = {}, {}
    for network in loss_networks:
        weights, weights_label = resolve_weights(network, squeezenet_weights if network == "squeezenet1_1" else "auto")
        for precision in precisions:
            trainer = build_trainer(network, weights, precision, size, transformer_config=transformer_config)
            key = f"{network}:{precision}"
            trainers[key] = trainer
            flops = training_step_flops(trainer.transformer, trainer.extractor, batch_size, size,
                                        trainer.style_layers)
            info[key] = {"loss_network": network, "weights": weights_label, "precision": precision, **flops}
    timers = {key: stopwatch(lambda trainer=trainer: trainer.train_on_batch(photos))
              for key, trainer in trainers.items()}
    probe = ConvPeakProbe(peak_shapes) if peak else None
    if probe is not None:
        timers.update(probe.timers())
    with LoadMonitor(0.5) as load:
        timings = time_side_by_side(timers, warmup, repeats)
        background, top = load.mark()
    window_peak = peak_of(probe.rows(timings))[0] if probe is not None else None
    rows = []
    for key, item in info.items():
        timing = timings[key]
        gflops = item["step_conv_flops"] / timing.median / GIGA
        rows.append({**{k: item[k] for k in ("loss_network", "weights", "precision")},
                     "step_s": timing.median, "best_s": timing.best, "all_s": list(timing.seconds),
                     "images_per_second": batch_size / timing.median,
                     "transformer_gflop": item["transformer_conv_flops"] / GIGA,
                     "loss_network_gflop": item["loss_network_conv_flops"] / GIGA,
                     "gram_gflop": item["step_gram_flops"] / GIGA, "gflops": gflops, "peak_gflops": window_peak,
                     "percent_of_peak": 100 * gflops / window_peak if window_peak else None,
                     "background_cores": background, "background_top": top})
    notes = [
        f"One step = FastStyleTrainer.train_on_batch of {batch_size} generated {size}x{size} photos: transformer "
        "forward, one loss-network pass over photos and outputs together, perceptual loss, gradients, Adam update "
        "(the train function fit runs; the data pipeline is not included). All trainers and the peak probe are "
        f"timed round-robin; warm-up {warmup} steps (tracing), median of {repeats}.",
        "conv GFLOP per step: transformer 3 x forward (forward, weight gradient, input gradient; minus the first "
        "conv's input gradient) x batch; loss network 4 x forward x batch (forward over the 2B concatenated "
        "photos and outputs, input gradient over the same 2B batch). Gram (forward + one-matmul gradient) is "
        "listed, not in GFLOP/s. '% of fp32 peak' uses the float32 3x3 peak of the same window"
        + (f" ({window_peak:.0f} GFLOP/s)." if window_peak else "."),
        "VGG weights are random (ImageNet VGG is not available offline; same compute). bfloat16 = the "
        "mixed_bfloat16 policy of --mixed-precision (what the shipped models were trained with).",
    ]
    settings = {"loss_networks": list(loss_networks), "size": size, "batch_size": batch_size, "warmup": warmup,
                "repeats": repeats, "precisions": list(precisions)}
    return SuiteResult("fast-training", machine, settings,
                       {"training": Table(f"Training step, batch {batch_size}, {size} px crops", _TRAINING_COLUMNS,
                                          rows)}, notes)


# ----------------------------------------------------------------------------- quality suite


def training_settings(model, style_name=None):
    """The loss settings a network was trained with, from its saved metadata.

    Args:
        model: TransformerNet (``model.metadata`` as written by :func:`nst_tf.training.train`).
        style_name: str or None. For a multi-style network, the style whose settings to return.

    Returns:
        dict with ``style`` (the style image's file name), ``style_size``, ``image_size``,
        ``loss_network``, ``content_weight``, ``style_weight``, ``tv_weight`` and
        ``source`` (``"metadata"``, or ``"defaults"`` for a network saved without it: the
        style ``<name>.jpg`` at 512 px and the SqueezeNet defaults).
    """
    training = model.metadata.get("training")
    name = style_name or "network"
    if not training:
        return {"style": f"{name}.jpg", "style_size": 512, "image_size": 256, "loss_network": "squeezenet1_1",
                "content_weight": None, "style_weight": None, "tv_weight": None, "source": "defaults"}
    config = training["config"]
    styles = model.metadata.get("styles", {})
    entry = styles.get(style_name) if style_name else next(iter(styles.values()), {})
    image = (entry or {}).get("image") or f"{name}.jpg"
    return {"style": pathlib.Path(image).name, "style_size": config.get("style_size"),
            "image_size": config.get("image_size"), "loss_network": training["loss_network"],
            "content_weight": training["content_weight"], "style_weight": (entry or {}).get("style_weight"),
            "tv_weight": training["tv_weight"], "source": "metadata"}


@dataclasses.dataclass
class QualityProblem:
    """The training objective of one shipped network, as an evaluator and as an optimization.

    Attributes:
        settings: dict from :func:`training_settings`.
        model: TransformerNet (float32).
        style_weights: float32 ``[N]`` selecting the style of a multi-style network; None.
        evaluator: FastStyleTrainer holding the network, the loss network and the style Grams;
            ``evaluator.perceptual_losses(photo, image)`` is the objective.
        config: StyleConfig of :func:`nst_tf.optimize.stylize` with the same objective.
        extractor: the FeatureExtractor both use.
        style: float32 ``[1, h, w, 3]`` style image at the training style size.
        weights_label: str, ``"file"`` or ``"random"`` (loss network weights).
    """

    settings: dict
    model: object
    style_weights: object
    evaluator: object
    config: StyleConfig
    extractor: object
    style: np.ndarray
    weights_label: str


def build_quality_problem(model_path, style_dir, size=256, iterations=300, optimizer="adam", learning_rate=None,
                          squeezenet_weights="auto", style_name=None, objective_model=None):
    """Builds :class:`QualityProblem` for a ``.keras`` network (settings from its metadata).

    With `objective_model` (a ``.keras`` path), the objective is that network's training
    objective instead: networks trained otherwise (``--objective pixel``, or a checkpoint
    without metadata) are then judged by one perceptual loss.

    The optimization objective (:func:`nst_tf.optimize.build_objective` of ``config``
    with ``extractor``, the style image as is) equals ``evaluator.perceptual_losses``
    for batch 1: same layers, equal style layer weights or the trainer's, same loss
    weights, Gram matrices of the same style image.  For a multi-style network,
    `style_name` picks the style (its own style weight).
    """
    model = load_transformer(model_path)
    settings = training_settings(load_transformer(objective_model) if objective_model else model, style_name)
    network_name = settings["loss_network"]
    weights, weights_label = resolve_weights(network_name, squeezenet_weights if network_name == "squeezenet1_1"
                                             else "auto")
    style = images.load_image(pathlib.Path(style_dir) / settings["style"])
    if settings["style_size"] and max(style.shape[1:3]) > settings["style_size"]:
        style = images.resize_longest_side(style, settings["style_size"])  # as training.train does.
    extractor = FeatureExtractor(sum(DEFAULT_LAYERS[network_name], ()), backbone=network_name, weights=weights)
    # The evaluator needs only the loss: no transformer inside (a multi-style one would want N styles).
    evaluator = FastStyleTrainer(None, style, content_weight=settings["content_weight"],
                                 style_weight=settings["style_weight"], tv_weight=settings["tv_weight"],
                                 feature_extractor=extractor)
    config = StyleConfig(
        image_size=size, backbone=network_name, weights=weights, content_layers=evaluator.content_layers,
        style_layers=evaluator.style_layers,
        style_layer_weights=tuple(evaluator.style_layer_weights[n] for n in evaluator.style_layers),
        content_weight=evaluator.loss_weights[0], style_weight=evaluator.loss_weights[1],
        tv_weight=evaluator.loss_weights[2], iterations=iterations, init="content", optimizer=optimizer,
        seed=0, **({} if learning_rate is None else {"learning_rate": learning_rate}))
    selection = model.style_weights(style_name) if style_name else None
    return QualityProblem(settings, model, selection, evaluator, config, extractor, style, weights_label)


def quality_targets(model_paths, styles=None):
    """``[(path, style name or None)]``: every style of each multi-style network (but ``photo``), or the network.

    Args:
        model_paths: ``.keras`` paths that exist.
        styles: optional iterable of style names to keep (multi-style networks only).
    """
    from nst_tf.config import PHOTO_STYLE

    targets = []
    for path in model_paths:
        names = load_transformer(path).style_names
        if names is None:
            targets.append((path, None))
        else:
            targets += [(path, name) for name in names if name != PHOTO_STYLE and (not styles or name in styles)]
    return targets


_QUALITY_COLUMNS = [
    ("model", "model", "{}"),
    ("photo", "photo", "{}"),
    ("shape", "px", "{}"),
    ("content_photo", "photo itself (0 it)", "{:.0f}"),
    ("network", "network loss", "{:.0f}"),
    ("network_s", "network s", "{:.3f}"),
    ("droplet", "droplet loss", "{:.3f}"),
]


def droplet_score(model, content, style_weights=None):
    """The unweighted droplet loss (:func:`nst_tf.losses.droplet_loss`) of a TransformerNet on one photo.

    The same term that ``--droplet-weight`` trains down, over the residual and upsampling
    blocks: zero when no compact blob stands out of the decoder's activations.

    Args:
        model: TransformerNet (anything else gives None).
        content: float32 ``[1, H, W, 3]``, RGB in [0, 255].
        style_weights: float32 ``[N]`` blend weights of a multi-style network, or None.

    Returns:
        float >= 0, squared standard deviations; None for a model that is not a TransformerNet.
    """
    if not isinstance(model, TransformerNet):
        return None
    styled = {} if style_weights is None else {"style": style_weights}
    activations = model(content, return_activations=True, **styled)[1]
    return float(losses.droplet_loss(activations[ENCODER_BLOCKS:]))


def run_quality_suite(model_paths=DEFAULT_MODELS, content_dir=None, style_dir=None, size=256,
                      iterations=(50, 100, 300), optimizer="adam", learning_rate=None, squeezenet_weights="auto",
                      max_photos=None, styles=None, objective_model=None):
    """Perceptual loss of the shipped networks next to optimization of the same objective.

    For each network of ``model_paths`` that exists and each content photo (longest
    side ``size``), evaluates the training objective of that network (loss network,
    layers, layer and loss weights, and the style image at the training style size,
    from :func:`training_settings`) with :meth:`FastStyleTrainer.perceptual_losses` on
    the network's output; then runs :func:`nst_tf.optimize.stylize` (initialized from
    the content) on exactly that objective and evaluates its image after each of
    ``iterations`` with the same evaluator.  ``match`` is the first iteration whose
    image has a loss at or below the network's.

    Args:
        model_paths: ``.keras`` paths (relative ones to the repository root); missing ones are skipped.
        content_dir, style_dir: folders of content photos and style images; None: the
            ``../shared/assets/images`` ones.
        size: int. Longest side of the photos, pixels.
        iterations: increasing ints. Checkpoints of the optimization.
        optimizer: ``"adam"`` or ``"lbfgs"``.
        learning_rate: float or None (StyleConfig's default, in pixels).
        squeezenet_weights: ``"auto"``, None or a path, for a ``squeezenet1_1`` loss network.
        max_photos: int or None. Use only the first photos (sorted by name).
        styles: optional style names: only these styles of multi-style networks.
        objective_model: optional ``.keras`` path: judge every network by this network's
            training objective (:func:`build_quality_problem`), not by its own.

    Returns:
        SuiteResult with table ``quality`` (one row per network (and style) and photo plus
        a mean row per network and style).

    Raises:
        FileNotFoundError: no network of ``model_paths`` exists, or no photos.
    """
    content_dir = pathlib.Path(content_dir or assets_dir() / "images" / "content")
    style_dir = pathlib.Path(style_dir or assets_dir() / "images" / "style")
    paths = existing_models(model_paths)
    if not paths:
        raise FileNotFoundError(f"None of the networks exists. Received: model_paths={list(model_paths)}")
    photos = sorted(p for p in content_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:max_photos]
    if not photos:
        raise FileNotFoundError(f"No content photos (.jpg, .png) found. Received: content_dir='{content_dir}'")
    iterations = sorted(set(int(i) for i in iterations))
    rows, checks, used = [], [], []
    for path, style_name in quality_targets(paths, styles):
        problem = build_quality_problem(path, style_dir, size, iterations[-1], optimizer, learning_rate,
                                        squeezenet_weights, style_name, objective_model)
        settings, model, evaluator, config, extractor, style = (
            problem.settings, problem.model, problem.evaluator, problem.config, problem.extractor, problem.style)
        evaluate = tf.function(evaluator.perceptual_losses)
        label = _display_path(path) + (f" [{style_name}]" if style_name else "")
        used.append({"model": label, **settings, "weights": problem.weights_label,
                     "learning_rate": config.learning_rate, "loss_weights": evaluator.loss_weights,
                     "layers": {"content": list(evaluator.content_layers), "style": list(evaluator.style_layers)}})
        model_rows = []
        for photo_path in photos:
            content = images.load_image(photo_path, max_size=size)
            stylize_image(model, content, style=problem.style_weights)  # warm-up (builds the oneDNN primitives).
            start = time.perf_counter()
            stylized = stylize_image(model, content, style=problem.style_weights)
            network_s = time.perf_counter() - start
            network = {k: float(v) for k, v in evaluate(content, stylized).items()}
            snapshots = {}

            def keep(iteration, image, values, snapshots=snapshots):
                if iteration in iterations:
                    snapshots[iteration] = np.array(image, np.float32)

            result = optimize.stylize(content, [style], config, [keep], progress=False, extractor=extractor)
            row = {"model": label, "photo": photo_path.stem, "shape": f"{content.shape[2]}x{content.shape[1]}",
                   "content_photo": result.history[0]["total"], "network": network["total"],
                   "network_s": network_s, "network_terms": network, "optimize_s": result.seconds,
                   "droplet": droplet_score(model, content, problem.style_weights)}
            for iteration in iterations:
                values = {k: float(v) for k, v in evaluate(content, snapshots[iteration]).items()}
                row[f"opt_{iteration}"] = values["total"]
                row[f"opt_{iteration}_terms"] = values
                row[f"ratio_{iteration}"] = network["total"] / values["total"]
                if iteration < len(result.history):  # history[n]: the objective of the image after n updates.
                    checks.append(abs(result.history[iteration]["total"] / values["total"] - 1))
            after = [h["total"] for h in result.history[1:]] + [row[f"opt_{iterations[-1]}"]]
            matched = next((n for n, value in enumerate(after, start=1) if value <= network["total"]), None)
            row["match"] = matched if matched is not None else f"> {iterations[-1]}"
            model_rows.append(row)
        mean = {"model": label, "photo": "**mean**", "shape": "",
                "content_photo": statistics.mean(r["content_photo"] for r in model_rows),
                "network": statistics.mean(
            r["network"] for r in model_rows), "network_s": statistics.mean(r["network_s"] for r in model_rows),
            "optimize_s": statistics.mean(r["optimize_s"] for r in model_rows),
            "droplet": None if model_rows[0]["droplet"] is None else statistics.mean(
                r["droplet"] for r in model_rows)}
        for iteration in iterations:
            mean[f"opt_{iteration}"] = statistics.mean(r[f"opt_{iteration}"] for r in model_rows)
            mean[f"ratio_{iteration}"] = mean["network"] / mean[f"opt_{iteration}"]
        numeric = [r["match"] for r in model_rows if isinstance(r["match"], int)]
        mean["match"] = (f"median {statistics.median(numeric):.0f}" if len(numeric) == len(model_rows)
                         else f"{len(numeric)}/{len(model_rows)} matched")
        rows += model_rows + [mean]
        del problem, model, evaluator, extractor
        gc.collect()
    columns = list(_QUALITY_COLUMNS)
    for iteration in iterations:
        columns.append((f"opt_{iteration}", f"{optimizer} {iteration} it", "{:.0f}"))
    columns.append((f"ratio_{iterations[1] if len(iterations) > 1 else iterations[0]}",
                    f"network / {optimizer} {iterations[1] if len(iterations) > 1 else iterations[0]}", "{:.2f}"))
    columns += [("match", f"{optimizer} its to reach network", "{}"),
                ("optimize_s", f"{optimizer} {iterations[-1]} it s", "{:.1f}")]
    notes = [
        f"Loss = the training objective of each network, evaluated in float32 by FastStyleTrainer.perceptual_losses "
        f"(content + style + TV, weighted) for the network's output and for the {optimizer} images alike.",
        "droplet loss: nst_tf.losses.droplet_loss (unweighted) of the network's residual and upsampling blocks on "
        "the photo: compact blobs of extreme activation, instance normalization's droplets; 0 when there are none.",
        f"Optimization: nst_tf.optimize.stylize, {optimizer}, learning rate {used[0]['learning_rate']} (pixels), "
        f"init = content, seed 0, the same extractor, layers, layer weights, loss weights and style image "
        f"(one objective; its value on the iterates agrees with the evaluator to a relative "
        f"{max(checks) if checks else float('nan'):.1e}).",
        f"Photos: {', '.join(p.stem for p in photos)} from {_display_path(content_dir)}, longest side {size} px.",
    ]
    for item in used:
        notes.append(
            f"{item['model']}: settings from {item['source']}: style {item['style']} at {item['style_size']} px, "
            f"loss network {item['loss_network']} ({item['weights']} weights), loss weights (content, style, tv) = "
            f"{item['loss_weights']}, layers {item['layers']}.")
    if objective_model:
        notes.append(f"Every network is judged by the training objective of {_display_path(objective_model)}.")
    settings = {"models": [u["model"] for u in used], "size": size, "iterations": iterations,
                "optimizer": optimizer, "photos": len(photos)}
    return SuiteResult("fast-quality", machine_info(), settings,
                       {"quality": Table("Perceptual loss of the network's output vs optimization of the same "
                                         "objective (lower is better)", columns, rows)}, notes)
