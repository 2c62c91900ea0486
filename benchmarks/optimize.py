"""Benchmarks of optimization-based stylization: ``optimize`` and ``optimize-variants``.

* ``optimize``: median seconds per optimization step of :func:`nst_tf.optimize.make_step`
  at 256 and 512 px for each backbone, the conv FLOPs of the truncated network,
  achieved GFLOP/s and the fraction of this machine's measured float32
  3x3-convolution peak.
* ``optimize-variants``: the same step under alternative settings (XLA, threads,
  oneDNN switches, Gram implementation, pooling, loop synchronization), each in
  its own worker process so that environment variables take effect, timed
  round-robin side by side with a baseline.

FLOP and timing conventions: :mod:`benchmarks.core`.
"""

import contextlib
import dataclasses
import gc
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from benchmarks.core import (GIGA, PEAK_SHAPES, LoadMonitor, SuiteResult, Table, gram_flops, machine_info,
                             peak_first, peak_of, resolve_weights, step_flops, stopwatch,
                             time_side_by_side)
from nst_tf import losses, optimize
from nst_tf.config import StyleConfig

BACKBONE_NAMES = ("vgg19", "vgg16", "squeezenet1_1")


# ----------------------------------------------------------------------------- optimize suite


@dataclasses.dataclass
class OptimizeCase:
    """One optimization problem built exactly as :func:`nst_tf.optimize.stylize` builds it (Adam).

    Attributes:
        config: StyleConfig.
        objective: StyleObjective.
        extractor: FeatureExtractor.
        image: ``tf.Variable`` float32 ``[1, size, size, 3]``.
        step: the compiled step of :func:`nst_tf.optimize.make_step`.
        weights_label: str, ``"random"`` or the weights file name.
        flops: dict from :func:`step_flops`.
    """

    config: StyleConfig
    objective: object
    extractor: object
    image: tf.Variable
    step: Callable
    weights_label: str
    flops: dict

    def iteration(self):
        """One loop iteration as ``nst_tf.optimize`` runs it: the step, then read the losses."""
        return {k: float(v) for k, v in self.step().items()}

    def forward(self):
        """Evaluates the objective only (forward pass, Gram matrices, losses); returns float losses."""
        if not hasattr(self, "_forward"):
            self._forward = tf.function(lambda: self.objective(self.image))
        return {k: float(v) for k, v in self._forward().items()}


def build_optimize_case(backbone="vgg19", size=512, weights="auto", seed=0, make_step=None, **config_fields):
    """Builds an Adam optimization problem of a ``size`` x ``size`` random content and style image.

    The objective, extractor, optimizer and step are those of :func:`nst_tf.optimize.stylize`
    (``build_objective``, ``keras.optimizers.Adam`` with the config's settings,
    ``make_step``); the pixel values do not change the compute.

    Args:
        backbone: str.
        size: int, pixels (square images).
        weights: see :func:`resolve_weights`.
        seed: int, for the random images.
        make_step: optional replacement for :func:`nst_tf.optimize.make_step` with its
            signature ``(objective, image, optimizer, jit_compile)`` (investigation only).
        **config_fields: other StyleConfig fields (``pooling``, ``jit_compile``).

    Returns:
        OptimizeCase.
    """
    weights, label = resolve_weights(backbone, weights)
    config = StyleConfig(image_size=size, backbone=backbone, weights=weights, **config_fields)
    rng = np.random.default_rng(seed)
    content = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    objective, extractor = optimize.build_objective(content, [style], config)
    image = tf.Variable(content, name="image")
    optimizer = keras.optimizers.Adam(config.learning_rate, config.adam_beta_1, config.adam_beta_2,
                                      config.adam_epsilon)
    step = (make_step or optimize.make_step)(objective, image, optimizer, config.jit_compile)
    flops = step_flops(extractor, (1, size, size, 3), config.resolved_layers()[1])
    return OptimizeCase(config, objective, extractor, image, step, label, flops)


_OPTIMIZE_COLUMNS = [
    ("backbone", "backbone", "{}"),
    ("size", "px", "{}"),
    ("weights", "weights", "{}"),
    ("conv_layers", "convs", "{}"),
    ("step_conv_gflop", "step conv GFLOP", "{:.1f}"),
    ("step_gram_gflop", "Gram GFLOP", "{:.1f}"),
    ("forward_s", "fwd s", "{:.4f}"),
    ("step_s", "step s (median)", "{:.4f}"),
    ("step_best_s", "step s (min)", "{:.4f}"),
    ("step_gflops", "conv GFLOP/s", "{:.0f}"),
    ("step_total_gflops", "conv+Gram GFLOP/s", "{:.0f}"),
    ("peak_gflops", "peak GFLOP/s (same window)", "{:.0f}"),
    ("percent_of_peak", "% of fp32 3x3 peak", "{:.1f}"),
    ("percent_of_dgrad_peak", "% of fwd+dgrad peak", "{:.1f}"),
    ("step_retraces", "retraces", "{}"),
    ("background_cores", "bg cores", "{:.2f}"),
]


def run_optimize_suite(sizes=(256, 512), backbones=BACKBONE_NAMES, warmup=2, repeats=10, peak=True,
                       squeezenet_weights="auto", peak_shapes=PEAK_SHAPES):
    """Seconds per optimization step, GFLOP/s and the fraction of the conv peak.

    For each backbone and size, builds the problem with :func:`build_optimize_case`
    and times, side by side, one loop iteration (the compiled step, reading the
    losses: what ``nst_tf.optimize`` does per iteration) and the
    objective's forward evaluation alone.

    Args:
        sizes: ints, image side in pixels.
        backbones: backbone names.
        warmup: int. Untimed iterations (the first traces and builds oneDNN primitives).
        repeats: int. Timed iterations.
        peak: bool. Measure the conv peak first (:func:`measure_conv_peak`).
        squeezenet_weights: ``"auto"``, None or a path (see :func:`resolve_weights`).
        peak_shapes: shapes for :func:`measure_conv_peak`.

    Returns:
        SuiteResult with tables ``peak`` (if ``peak``) and ``steps``; each step row has
        ``step_s`` (median seconds per iteration), ``step_gflops`` (conv GFLOP/s) and
        ``percent_of_peak``.
    """
    machine = machine_info()
    tables = {}
    peak_value = dgrad_peak = None
    rows = []
    with LoadMonitor(0.5) as load:
        if peak:
            probe, tables["peak"], (peak_value, dgrad_peak) = peak_first(peak_shapes, repeats, load)
        for backbone in backbones:
            for size in sizes:
                weights = squeezenet_weights if backbone == "squeezenet1_1" else "auto"
                case = build_optimize_case(backbone, size, weights)
                case.iteration()  # the first call traces (twice: Keras creates Adam's slots in the first trace).
                first_traces = _tracing_count(case.step)
                timers = {"step": stopwatch(case.iteration), "forward": stopwatch(case.forward)}
                if peak:
                    timers.update(probe.timers())  # the peak beside the step: same background load.
                load.mark()
                timings = time_side_by_side(timers, warmup, repeats)
                window = peak_of(probe.rows(timings)) if peak else (None, None)
                row = _step_row(case, backbone, size, timings["step"], timings["forward"], *window)
                row["background_cores"], row["background_top"] = load.mark()
                traces = _tracing_count(case.step)
                row["step_retraces"] = None if traces is None else traces - first_traces
                rows.append(row)
                del case
                gc.collect()
    tables["steps"] = Table("Optimization step (Adam, float32, batch 1, square image)", _OPTIMIZE_COLUMNS, rows)
    notes = _optimize_notes(peak_value, dgrad_peak, rows + tables.get("peak", Table("", [], [])).rows)
    settings = {"sizes": list(sizes), "backbones": list(backbones), "warmup": warmup, "repeats": repeats}
    return SuiteResult("optimize", machine, settings, tables, notes)


def _step_row(case, backbone, size, step, forward, peak_value, dgrad_peak):
    flops = case.flops
    gflops = flops["step_conv_flops"] / step.median / GIGA
    return {
        "backbone": backbone,
        "size": size,
        "weights": case.weights_label,
        "conv_layers": flops["conv_layers"],
        "forward_conv_gflop": flops["forward_conv_flops"] / GIGA,
        "step_conv_gflop": flops["step_conv_flops"] / GIGA,
        "step_gram_gflop": flops["step_gram_flops"] / GIGA,
        "forward_s": None if forward is None else forward.median,
        "step_s": step.median,
        "step_best_s": step.best,
        "step_all_s": list(step.seconds),
        "step_gflops": gflops,
        "step_total_gflops": (flops["step_conv_flops"] + flops["step_gram_flops"]) / step.median / GIGA,
        "forward_gflops": None if forward is None else flops["forward_conv_flops"] / forward.median / GIGA,
        "peak_gflops": peak_value,
        "dgrad_peak_gflops": dgrad_peak,
        "percent_of_peak": None if not peak_value else 100 * gflops / peak_value,
        "percent_of_dgrad_peak": None if not dgrad_peak else 100 * gflops / dgrad_peak,
    }


def _tracing_count(function):
    """How often a ``tf.function`` was traced (1 = never retraced), or None if unknown."""
    count = getattr(function, "experimental_get_tracing_count", None)
    return count() if count else None


def _optimize_notes(peak_value, dgrad_peak, rows):
    notes = [
        "step s: one loop iteration of nst_tf.optimize (Adam): the compiled make_step step "
        "(objective, gradient w.r.t. the image, finiteness check, Adam update, clip to [0, 255]), float() of the "
        "losses. "
        "fwd s: the objective alone (features, Gram matrices, losses), compiled, timed side by side. "
        "retraces: traces of the step's tf.function after its first call (0: never retraced).",
        "conv GFLOP/s = step conv FLOPs / median step seconds; step conv FLOPs = 2 x forward conv FLOPs "
        "(forward + input gradient; no weight gradient); % of peak uses it. Gram GFLOP = 2 x forward Gram FLOPs "
        "(the product F^T F and its one-matmul gradient F (dG + dG^T)); conv+Gram GFLOP/s adds them.",
    ]
    if peak_value:
        notes.append(f"Peak measured alone first: best forward float32 3x3 conv {peak_value:.0f} GFLOP/s" +
                     (f", best forward + input gradient {dgrad_peak:.0f} GFLOP/s" if dgrad_peak else "") +
                     ". '% of peak' divides by the peak re-measured round-robin with that row's timings "
                     "('peak GFLOP/s (same window)': best forward median over the peak shapes), so both "
                     "see the same background load.")
    loads = [r["background_cores"] for r in rows if r.get("background_cores") is not None]
    if loads:
        notes.append(f"bg cores: mean CPU cores used by other processes while that row was timed (this machine "
                     f"has {os.cpu_count()}); highest {max(loads):.2f}. Rows above ~0.1 are disturbed.")
    top = {}
    for entry in (t for r in rows for t in r.get("background_top", ())):
        pid, cores, command = entry.split(" ", 2)
        if float(cores) > top.get(pid, (0.0, ""))[0]:
            top[pid] = (float(cores), command)
    if top:
        busiest = sorted(top.items(), key=lambda item: -item[1][0])[:3]
        notes.append("Busiest other processes (pid, cores while a row was timed, command): " +
                     "; ".join(f"{pid} {cores:.2f} {command}" for pid, (cores, command) in busiest))
    return notes


# ----------------------------------------------------------------------------- optimize-variants suite


def gram_matrix_einsum(features):
    """The earlier ``losses.gram_matrix``: one einsum, TensorFlow's generic gradient (for comparison)."""
    features = tf.cast(features, tf.float32)
    locations = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
    return tf.einsum("bijc,bijd->bcd", features, features) / locations


def gram_matrix_matmul(features):
    """Gram matrix as a reshape and one batched ``tf.matmul`` with TensorFlow's gradient (for comparison)."""
    features = tf.cast(features, tf.float32)
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    return tf.matmul(flat, flat, transpose_a=True) / tf.cast(shape[1] * shape[2], tf.float32)


# "library" is losses.gram_matrix (matmul with the one-matmul symmetric gradient since this investigation).
GRAM_IMPLEMENTATIONS = {"library": losses.gram_matrix, "einsum": gram_matrix_einsum, "matmul": gram_matrix_matmul}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One alternative way to run the optimization step, for ``optimize-variants``.

    Attributes:
        name: str, short key.
        description: str, what changes relative to the baseline.
        env: tuple of ``(name, value)`` environment variables set before TensorFlow starts.
        intra_op, inter_op: int thread-pool sizes (0: TensorFlow's default, the core count).
        jit_compile: bool, XLA-compile the step (``StyleConfig.jit_compile``).
        gram: ``"library"`` (``losses.gram_matrix``, einsum), ``"matmul"`` or ``"symmetric"``.
        sync: ``"loop"`` (as nst_tf.optimize: read the losses each iteration) or ``"none"``
            (call the step only).
        clip: bool, clip the image to [0, 255] after the update (False needs a replica step).
        mode: ``"step"``, ``"forward"`` (objective only) or ``"network"`` (the extractor
            network forward + input gradient, no losses: the conv chain alone).
        pooling: ``"max"`` or ``"avg"``.
    """

    name: str
    description: str
    env: tuple = ()
    intra_op: int = 0
    inter_op: int = 0
    jit_compile: bool = False
    gram: str = "library"
    sync: str = "loop"
    clip: bool = True
    mode: str = "step"
    pooling: str = "max"


VARIANTS = {v.name: v for v in (
    Variant("baseline", "nst_tf.optimize as is"),
    Variant("network-only", "extractor network forward + input gradient only (no losses, no Gram, no Adam)",
            mode="network"),
    Variant("forward-only", "objective forward only (no gradient)", mode="forward"),
    Variant("gram-symmetric", "Gram by matmul with a one-matmul custom gradient", gram="library"),
    Variant("gram-matmul", "Gram by reshape + tf.matmul (TensorFlow's gradient)", gram="matmul"),
    Variant("gram-einsum", "the earlier einsum Gram (TensorFlow's gradient)", gram="einsum"),
    Variant("xla", "jit_compile=True on the step", jit_compile=True),
    Variant("inter-op-1", "inter_op_parallelism_threads=1", inter_op=1),
    Variant("intra-op-1", "intra_op_parallelism_threads=1 (one core)", intra_op=1),
    Variant("no-sync", "no float() of the losses per iteration", sync="none"),
    Variant("no-clip", "no clip/assign after the update (replica step)", clip=False),
    Variant("avg-pool", "pooling='avg'", pooling="avg"),
    Variant("onednn-off", "TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels)", env=(("TF_ENABLE_ONEDNN_OPTS", "0"),)),
    Variant("onednn-frozen-weights", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (cache reordered weights)",
            env=(("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1"),)),
    Variant("cpu-bfc-allocator", "TF_CPU_ALLOCATOR_USE_BFC=true", env=(("TF_CPU_ALLOCATOR_USE_BFC", "true"),)),
    Variant("gram-symmetric+inter-op-1", "both", gram="library", inter_op=1),
    Variant("gram-symmetric+frozen-weights", "both", gram="library",
            env=(("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1"),)),
    Variant("frozen-weights+inter-op-1", "both: the stylize process (nst_tf.cli.configure_stylize_process)",
            env=(("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1"),), inter_op=1),
    Variant("stylize-process+network-only", "frozen-weights+inter-op-1, the extractor network alone",
            mode="network", env=(("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1"),), inter_op=1),
)}
DEFAULT_VARIANTS = tuple(VARIANTS)


def _replica_step(clip):
    """A copy of ``nst_tf.optimize.make_step`` with the clip optional (investigation only)."""

    def make_step(objective, image, optimizer, jit_compile=False):
        @tf.function(jit_compile=jit_compile)
        def step():
            with tf.GradientTape() as tape:
                values = objective(image)
            optimizer.apply_gradients([(tape.gradient(values["total"], image), image)])
            if clip:
                image.assign(tf.clip_by_value(image, 0.0, 255.0))
            return values

        return step

    return make_step


class _VariantRunner:
    """Runs one Variant inside the current process (a worker; TensorFlow already configured)."""

    def __init__(self, variant, backbone, size, weights):
        losses.gram_matrix = GRAM_IMPLEMENTATIONS[variant.gram]  # this worker process only.
        self.variant = variant
        self.case = build_optimize_case(backbone, size, weights, make_step=None if variant.clip else
                                        _replica_step(False), pooling=variant.pooling,
                                        jit_compile=variant.jit_compile)
        if variant.mode == "network":
            self._network = self._network_function()

    def _network_function(self):
        case = self.case
        outputs = case.extractor(case.image)
        rng = np.random.default_rng(1)
        upstream = {k: tf.constant(rng.standard_normal(v.shape, np.float32)) for k, v in outputs.items()}

        @tf.function(jit_compile=self.variant.jit_compile)
        def network():
            with tf.GradientTape() as tape:
                features = case.extractor(case.image)
            names = list(features)
            gradient = tape.gradient([features[n] for n in names], case.image,
                                     output_gradients=[upstream[n] for n in names])
            return gradient[0, 0, 0]

        return network

    def run_once(self):
        """Runs one repetition; returns seconds."""
        start = time.perf_counter()
        if self.variant.mode == "forward":
            self.case.forward()
        elif self.variant.mode == "network":
            self._network().numpy()
        elif self.variant.sync == "none":
            self.case.step()
        else:
            self.case.iteration()
        return time.perf_counter() - start


def _variant_worker():
    """Entry point of a worker process: JSON lines on stdin, JSON lines on the original stdout.

    Protocol: first line ``{"variant": {...}, "backbone", "size", "weights"}``; answers
    ``{"ready": true, "flops": {...}}``. Then ``"run"`` -> ``{"seconds": float}``,
    ``"quit"`` -> exit.  Anything else the process prints goes to stderr.
    """
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    request = json.loads(sys.stdin.readline())
    variant = Variant(**{k: tuple(tuple(e) for e in v) if k == "env" else v for k, v in request["variant"].items()})
    if variant.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(variant.intra_op)
    if variant.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(variant.inter_op)
    runner = _VariantRunner(variant, request["backbone"], request["size"], request["weights"])
    out.write(json.dumps({"ready": True, "flops": runner.case.flops}) + "\n")
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        out.write(json.dumps({"seconds": runner.run_once()}) + "\n")


class _Worker:
    """A worker process running one Variant; ``worker()`` times one repetition (seconds)."""

    def __init__(self, variant, backbone, size, weights, log_dir):
        env = dict(os.environ, **dict(variant.env))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        root = str(pathlib.Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.log_path = os.path.join(log_dir, f"worker-{variant.name}.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from benchmarks.optimize import _variant_worker; _variant_worker()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env, text=True, cwd=root,
        )
        self.variant = variant
        self.flops = None
        self._send({"variant": dataclasses.asdict(variant), "backbone": backbone, "size": size,
                    "weights": weights})

    def wait_ready(self):
        """Blocks until the worker has built its step; sets ``flops``."""
        self.flops = self._receive()["flops"]

    def _send(self, message):
        self.process.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.process.stdin.flush()

    def _receive(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.flush()
            tail = pathlib.Path(self.log_path).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"Benchmark worker {self.variant.name!r} exited with code "
                               f"{self.process.returncode}. Its log ends with:\n{tail}")
        return json.loads(line)

    def __call__(self):
        self._send("run")
        return self._receive()["seconds"]

    def close(self):
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._send("quit")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


_VARIANT_COLUMNS = [
    ("group", "group", "{}"),
    ("variant", "variant", "{}"),
    ("description", "what changes", "{}"),
    ("median_s", "median s", "{:.4f}"),
    ("best_s", "min s", "{:.4f}"),
    ("vs_baseline", "time / baseline", "{:.3f}"),
    ("gflops", "conv GFLOP/s", "{:.0f}"),
    ("peak_gflops", "peak GFLOP/s (same window)", "{:.0f}"),
    ("percent_of_peak", "% of peak", "{:.1f}"),
    ("background_cores", "bg cores", "{:.2f}"),
]


def run_optimize_variants_suite(backbone="vgg19", size=512, variants=DEFAULT_VARIANTS, warmup=2, repeats=6,
                                max_workers=4, peak=True, gram=True, squeezenet_weights="auto", log_dir=None,
                                peak_shapes=PEAK_SHAPES):
    """Times the optimization step under alternative settings, each against a baseline run beside it.

    Variants are split into groups of at most ``max_workers - 1``, each group run with
    a fresh baseline; every member of a group is a worker process (so environment
    variables and thread pools take effect) and the group is timed round-robin
    (:func:`time_side_by_side`).  ``vs_baseline`` is the median over the group's
    baseline median.

    Args:
        backbone: str. size: int, pixels.
        variants: names in :data:`VARIANTS` (``"baseline"`` is added to every group).
        warmup, repeats: ints, per worker.
        max_workers: int >= 2. Workers alive at once (each holds a network; VGG19 at
            512 px peaks near 1.8 GB).
        peak: bool. Measure the conv peak first, for ``percent_of_peak``.
        gram: bool. Time the Gram matrix implementations alone (:func:`measure_gram`).
        squeezenet_weights: see :func:`resolve_weights`.
        log_dir: folder for the workers' stderr logs (a temporary folder if None).
        peak_shapes: shapes for :func:`measure_conv_peak`.

    Returns:
        SuiteResult with tables ``peak`` (if ``peak``), ``gram`` (if ``gram``) and ``variants``.

    Raises:
        ValueError: unknown variant name. RuntimeError: a worker failed (with its log).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"Unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}. "
                         f"Received: variants={list(variants)}")
    if max_workers < 2:
        raise ValueError("max_workers must be at least 2 (baseline + one variant). "
                         f"Received: max_workers={max_workers}")
    import tempfile

    machine = machine_info()
    tables = {}
    peak_value = dgrad_peak = None
    others = [v for v in variants if v != "baseline"]
    step = max_workers - 1
    groups = [others[i:i + step] for i in range(0, len(others), step)] or [[]]
    rows = []
    log_dir = log_dir or tempfile.mkdtemp(prefix="nst_tf_benchmark_")
    weights = squeezenet_weights if backbone == "squeezenet1_1" else "auto"
    with LoadMonitor(0.5) as load:
        if peak:
            probe, tables["peak"], (peak_value, dgrad_peak) = peak_first(peak_shapes, repeats, load)
        if gram:
            tables["gram"] = Table(f"Gram matrix forward + gradient at the style layers of {backbone}, {size} px",
                                   _GRAM_COLUMNS, measure_gram(backbone, size, warmup=2, repeats=max(repeats, 5)))
        for index, group in enumerate(groups, start=1):
            workers = {}
            try:
                for name in ["baseline"] + group:
                    workers[name] = _Worker(VARIANTS[name], backbone, size, weights, log_dir)
                for worker in workers.values():
                    worker.wait_ready()
                timers = dict(workers)
                if peak:
                    timers.update(probe.timers())  # the peak beside the variants: same background load.
                load.mark()
                timings = time_side_by_side(timers, warmup, repeats)
                background, top = load.mark()
                window_peak = peak_of(probe.rows(timings))[0] if peak else None
            finally:
                for worker in workers.values():
                    worker.close()
            base = timings["baseline"].median
            for name, timing in ((n, t) for n, t in timings.items() if n in workers):
                flops = workers[name].flops
                variant = VARIANTS[name]
                useful = flops["forward_conv_flops"] if variant.mode == "forward" else flops["step_conv_flops"]
                gflops = useful / timing.median / GIGA
                rows.append({
                    "group": index, "variant": name, "description": variant.description,
                    "median_s": timing.median, "best_s": timing.best, "all_s": list(timing.seconds),
                    "vs_baseline": timing.median / base, "gflops": gflops,
                    "peak_gflops": window_peak,
                    "percent_of_peak": None if not window_peak else 100 * gflops / window_peak,
                    "background_cores": background, "background_top": top,
                })
    tables["variants"] = Table(f"Optimization step variants, {backbone} at {size} px (each group timed side by side)",
                               _VARIANT_COLUMNS, rows)
    notes = [
        "Each variant runs in its own process; a group (baseline + variants) is timed round-robin, so "
        "'time / baseline' compares runs under the same background load.",
        "conv GFLOP/s counts step conv FLOPs (forward-only: forward conv FLOPs) over the median.",
    ] + _optimize_notes(peak_value, dgrad_peak, rows)[2:]
    settings = {"backbone": backbone, "size": size, "warmup": warmup, "repeats": repeats,
                "max_workers": max_workers}
    return SuiteResult("optimize-variants", machine, settings, tables, notes)


_GRAM_COLUMNS = [
    ("layer", "layer", "{}"),
    ("shape", "features", "{}"),
    ("gflop", "GFLOP fwd", "{:.2f}"),
    ("library_s", "library (symmetric-grad matmul) fwd+grad s", "{:.4f}"),
    ("einsum_s", "einsum s", "{:.4f}"),
    ("matmul_s", "matmul s", "{:.4f}"),
]


def measure_gram(backbone="vgg19", size=512, warmup=2, repeats=5):
    """Times a Gram matrix and its gradient at each style layer's feature shape.

    Compares ``losses.gram_matrix`` (matmul, one-matmul gradient) with :func:`gram_matrix_matmul` and
    :func:`gram_matrix_einsum` (the earlier implementation), side by side; each function computes the Gram
    matrix of random features, a squared-error loss to a random target, and the
    gradient with respect to the features (what a style layer costs in a step,
    minus the conv work).

    Returns:
        list of dicts, one per style layer, plus a ``total`` row: ``layer``, ``shape``,
        ``gflop`` (forward Gram GFLOP) and ``library_s`` / ``einsum_s`` / ``matmul_s``
        (median seconds).
    """
    config = StyleConfig(image_size=size, backbone=backbone, weights=None)
    style_layers = config.resolved_layers()[1]
    from nst_tf.features import FeatureExtractor

    extractor = FeatureExtractor(list(style_layers), backbone, None)
    shapes = extractor.network.compute_output_shape((1, size, size, 3))
    if len(style_layers) == 1:
        shapes = [shapes]
    del extractor
    rng = np.random.default_rng(0)
    rows = []
    for name, shape in zip(style_layers, shapes):
        shape = tuple(int(d) for d in shape)
        features = tf.constant(np.maximum(rng.standard_normal(shape, np.float32), 0))
        target = tf.constant(rng.standard_normal((1, shape[-1], shape[-1]), np.float32))
        timers = {}
        for label, gram in GRAM_IMPLEMENTATIONS.items():
            function = _gram_and_gradient(gram, target)
            timers[label] = stopwatch(lambda function=function: function(features).numpy())
        timings = time_side_by_side(timers, warmup, repeats)
        rows.append({"layer": name, "shape": "x".join(map(str, shape)), "gflop": gram_flops(shape) / GIGA,
                     **{f"{label}_s": timing.median for label, timing in timings.items()}})
    total = {"layer": "total", "shape": "", "gflop": sum(r["gflop"] for r in rows)}
    total.update({f"{label}_s": sum(r[f"{label}_s"] for r in rows) for label in GRAM_IMPLEMENTATIONS})
    return rows + [total]


def _gram_and_gradient(gram, target):
    @tf.function(autograph=False)
    def function(features):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_mean(tf.square(gram(features) - target))
        return tape.gradient(loss, features)[0, 0, 0, :1]

    return function
