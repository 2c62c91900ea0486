"""Benchmarks of the optimization controls: time to quality, bfloat16, peak memory.

Each suite returns a :class:`benchmarks.core.SuiteResult`; ``scripts/benchmark.py``
runs them (``time-to-quality``, ``precision``, ``memory``) and BENCHMARKS.md records them.
"""

import dataclasses
import resource
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.core import SuiteResult, Table, machine_info, resolve_weights, stopwatch, time_side_by_side
from nst_tf import optimize
from nst_tf.config import StyleConfig

ASSET_IMAGES = ("images/content/tubingen.jpg", "images/style/starry_night.jpg")

# The TF tutorial's layers, mapped onto SqueezeNet by downsampling stage: VGG block k works at 1/2^(k-1),
# and conv1 (1/2), fire2 (1/4), fire4 (1/8), fire6 and fire8 (1/16) are the first layers of each stage.
TUTORIAL_LAYERS = {
    "vgg19": (("block5_conv2",), ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")),
    "squeezenet1_1": (("fire9",), ("conv1", "fire2", "fire4", "fire6", "fire8")),
}


def _images(assets, size):
    content, styles = optimize.load_inputs(assets / ASSET_IMAGES[0], [assets / ASSET_IMAGES[1]],
                                           StyleConfig(image_size=size))
    return content, styles


def _tutorial_config(backbone, weights, size, **overrides):
    content_layers, style_layers = TUTORIAL_LAYERS[backbone]
    return StyleConfig.from_preset("tf-tutorial", backbone=backbone, weights=weights, image_size=size,
                                   content_layers=content_layers, style_layers=style_layers,
                                   **overrides)


class _Target:
    """Callback: stops a run once the objective at the final size reaches ``value``."""

    def __init__(self, value, final_shape):
        self.value, self.final_shape = value, tuple(final_shape)
        self.start, self.reached_at = time.perf_counter(), None

    def __call__(self, iteration, image, losses):
        if tuple(image.shape[1:3]) == self.final_shape and losses["total"] <= self.value:
            self.reached_at = time.perf_counter() - self.start
            raise optimize.StopOptimization


def time_to_quality(assets, backbone="squeezenet1_1", weights="auto", size=512, baseline_iterations=1000,
                    candidates=None, budget_factor=1.0):
    """Wall time for solvers to reach the tf-tutorial preset's final loss, same objective, same run.

    The baseline is the preset itself (Adam, 1000 steps at 512 px, content start): its
    final image's objective value is the target.  Each candidate (L-BFGS, coarse-to-fine,
    bfloat16, ...) then runs until its image at the final size has an objective value
    (re-evaluated in float32) at or below the target, or until it has used
    ``budget_factor`` times the baseline's wall time.

    Args:
        assets: pathlib.Path of ``../shared/assets`` (content tubingen, style starry_night).
        backbone: ``vgg19`` (random seeded weights: the real network's compute) or
            ``squeezenet1_1`` (ImageNet weights when present: real features).
        weights: ``"auto"``, ``None`` or a path (see ``benchmarks.core.resolve_weights``).
        size: int, output longest side, pixels.
        baseline_iterations: int, Adam steps of the baseline.
        candidates: dict ``{name: dict of StyleConfig overrides}``; defaults to
            :func:`default_candidates`.
        budget_factor: float, candidates stop after this multiple of the baseline time.

    Returns:
        SuiteResult with one row per solver: seconds to target, iterations, final
        objective, ratio of the baseline time.
    """
    weights, weights_label = resolve_weights(backbone, weights)
    content, styles = _images(assets, size)
    base = _tutorial_config(backbone, weights, size, iterations=baseline_iterations)
    extractor = optimize.make_extractor(base)
    start = time.perf_counter()
    baseline = optimize.stylize(content, styles, base, progress=False, extractor=extractor)
    baseline_seconds = time.perf_counter() - start
    objective, _ = optimize.build_objective(content, styles, base, extractor)
    evaluate = tf.function(lambda image: objective(image)["total"])
    target = float(evaluate(tf.constant(baseline.image)))
    rows = [{"solver": "adam (tf-tutorial preset)", "seconds": baseline_seconds, "iterations": baseline.iterations,
             "objective": target, "reached": True, "speedup": 1.0}]
    if candidates is None:
        candidates = default_candidates(backbone, size, baseline_iterations)
    budget = budget_factor * baseline_seconds
    for name, overrides in candidates.items():
        config = dataclasses.replace(base, **overrides)
        extractor_c = extractor if config.precision == base.precision else optimize.make_extractor(config)
        stopper, deadline = _Target(target, content.shape[1:3]), _Deadline(budget)
        result = optimize.stylize(content, styles, config, [stopper, deadline], progress=False,
                                  extractor=extractor_c)
        seconds = time.perf_counter() - stopper.start
        final = float(evaluate(tf.constant(result.image)))
        reached = stopper.reached_at is not None and final <= target * 1.0005
        rows.append({"solver": name, "seconds": seconds, "iterations": result.iterations, "objective": final,
                     "reached": reached, "speedup": baseline_seconds / seconds if reached else None})
    table = Table(
        f"Time to the tf-tutorial preset's final loss ({backbone}, {size} px, tubingen + starry_night)",
        [("solver", "solver", "{}"), ("seconds", "wall s", "{:.1f}"), ("iterations", "iterations", "{}"),
         ("objective", "objective", "{:.6g}"), ("reached", "reached", "{}"), ("speedup", "x faster", "{:.2f}")],
        rows,
    )
    notes = [
        f"Target: the objective value of the image after {baseline_iterations} Adam steps of the tf-tutorial "
        f"preset ({target:.6g}); every image is re-evaluated with the same float32 objective.",
        "Times are wall-clock from the call to stylize() (graph tracing and the low-resolution scale included) "
        "until the final-size objective first reaches the target.",
        f"Backbone weights: {weights_label}; layers "
        f"{TUTORIAL_LAYERS[backbone][0] + TUTORIAL_LAYERS[backbone][1]}.",
    ]
    return SuiteResult("time-to-quality", machine_info(), {"backbone": backbone, "size": size,
                                                            "baseline_iterations": baseline_iterations},
                       {"ttq": table}, notes)


def default_candidates(backbone, size, baseline_iterations=1000):
    """The solver configurations :func:`time_to_quality` races against the preset by default.

    L-BFGS with 5 corrections (more cost time per iteration and did not pay back), SciPy's
    and nst_tf's own, coarse-to-fine from ``size / 8`` (at least 64 px), and a bfloat16
    feature network at the coarse scales.  Coarse scales get 50 iterations with
    SqueezeNet (of 25 to 200 tried at 512 px, the fastest: the 512 px scale needs ~90
    iterations whatever the start) and 200 with VGG19 (random weights; 200 reached the
    target at the first full-size iteration at 256 px).

    Returns:
        dict ``{name: dict of StyleConfig overrides}``.
    """
    scales = tuple(s for s in (size // 8, size // 4, size // 2) if s >= 64) + (size,)
    coarse = 50 if backbone == "squeezenet1_1" else 200
    plan = dict(scales=scales, scale_iterations=(coarse,) * (len(scales) - 1) + (baseline_iterations,))
    bf16 = dict(plan, scale_precisions=("bfloat16",) * (len(scales) - 1) + ("float32",))
    label = f"scales {','.join(map(str, scales))}, {coarse} its per coarse scale"
    lbfgs = dict(optimizer="lbfgs", lbfgs_memory=5)
    candidates = {
        f"lbfgs scipy (m=5), {label}": dict(lbfgs, **plan),
        "lbfgs tf (m=5), one scale": dict(lbfgs, lbfgs_solver="tf"),
        f"lbfgs tf (m=5), {label}": dict(lbfgs, lbfgs_solver="tf", **plan),
        f"lbfgs tf (m=5), {label}, bfloat16 below {size} px": dict(lbfgs, lbfgs_solver="tf", **bf16),
    }
    if backbone != "squeezenet1_1":
        # One VGG19 iteration at full size costs ~1 s: a run of it alone cannot reach the target in time.
        del candidates["lbfgs tf (m=5), one scale"]
    return candidates


class _Deadline:
    def __init__(self, seconds):
        self.seconds, self.start = seconds, time.perf_counter()

    def __call__(self, iteration, image, losses):
        if time.perf_counter() - self.start > self.seconds:
            raise optimize.StopOptimization


def precision_comparison(assets, backbone="vgg19", weights="auto", sizes=(256, 512), iterations=200,
                         loss_size=256, warmup=2, repeats=8):
    """bfloat16 against float32: step time side by side, and the loss after a run.

    Args:
        assets: pathlib.Path of ``../shared/assets``.
        backbone: backbone of the step timing (VGG19 by default, random weights).
        weights: see ``benchmarks.core.resolve_weights``.
        sizes: image sides, pixels, of the step timing.
        iterations: Adam steps of the loss comparison (SqueezeNet with ImageNet weights
            when present, tubingen + starry_night at ``loss_size`` px).
        warmup, repeats: timing repetitions.

    Returns:
        SuiteResult with a step-time table (median s, speed-up) and a final-loss table.
    """
    timing_rows = []
    for size in sizes:
        image = tf.Variable(np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32"))
        timers, steps = {}, {}
        for precision in ("float32", "bfloat16"):
            config = StyleConfig(backbone=backbone, weights=resolve_weights(backbone, weights)[0], image_size=size,
                                 precision=precision)
            content = image.numpy()
            objective, _ = optimize.build_objective(content, [content[:, ::-1]], config)
            step = optimize.make_step(objective, image, keras.optimizers.Adam(1.0))
            steps[precision] = step
            timers[precision] = stopwatch(lambda step=step: float(step()["total"]))
        timings = time_side_by_side(timers, warmup, repeats)
        timing_rows.append({"backbone": backbone, "size": size, "float32_s": timings["float32"].median,
                            "bfloat16_s": timings["bfloat16"].median,
                            "speedup": timings["float32"].median / timings["bfloat16"].median})
    loss_backbone = "squeezenet1_1"
    loss_weights, loss_label = resolve_weights(loss_backbone, "auto")
    content, styles = _images(assets, loss_size)
    loss_rows = []
    finals = {}
    for precision in ("float32", "bfloat16"):
        config = StyleConfig(backbone=loss_backbone, weights=loss_weights, image_size=loss_size,
                             iterations=iterations, precision=precision)
        result = optimize.stylize(content, styles, config, progress=False)
        reference = dataclasses.replace(config, precision="float32")
        objective, _ = optimize.build_objective(content, styles, reference)
        finals[precision] = float(objective(tf.constant(result.image))["total"])
        loss_rows.append({"precision": precision, "seconds": result.seconds, "final_loss": finals[precision],
                          "vs_float32": finals[precision] / finals.get("float32", finals[precision]) - 1})
    tables = {
        "steps": Table(f"Adam step, {backbone} (random weights), float32 vs bfloat16, side by side",
                       [("backbone", "backbone", "{}"), ("size", "px", "{}"), ("float32_s", "float32 s", "{:.3f}"),
                        ("bfloat16_s", "bfloat16 s", "{:.3f}"), ("speedup", "speed-up", "{:.2f}x")],
                       timing_rows),
        "loss": Table(f"{iterations} Adam steps, {loss_backbone} ({loss_label} weights), {loss_size} px; final loss re-evaluated in float32",
                      [("precision", "precision", "{}"), ("seconds", "loop s", "{:.1f}"),
                       ("final_loss", "final loss", "{:.6g}"), ("vs_float32", "vs float32", "{:+.2%}")],
                      loss_rows),
    }
    return SuiteResult("precision", machine_info(), {"backbone": backbone, "sizes": list(sizes),
                                                      "iterations": iterations}, tables,
                       ["Gram matrices and losses are float32 in both; only the feature network changes precision."])


def peak_memory(sizes=(512, 1024, 2048), backbone="vgg19", precisions=("float32",), extra=((2048, "bfloat16"),)):
    """Peak resident set of a short optimization (2 Adam steps), one fresh process per case.

    Returns:
        SuiteResult: per case the measured peak RSS (GiB), the process's RSS before the
        image work, and nst_tf.memory's estimate (GiB).
    """
    cases = [(size, precision) for size in sizes for precision in precisions] + list(extra)
    rows = []
    for size, precision in cases:
        output = subprocess.run(
            [sys.executable, "-c", "from benchmarks.controls import _memory_worker as w; w()",
             backbone, str(size), precision], capture_output=True, text=True, check=True).stdout
        base, peak, estimate = (float(v) for v in output.strip().splitlines()[-1].split())
        rows.append({"size": size, "precision": precision, "base_gib": base, "peak_gib": peak,
                     "estimate_gib": estimate})
    table = Table(f"Peak resident memory of an optimization step, {backbone} (square images)",
                  [("size", "px", "{}"), ("precision", "precision", "{}"), ("base_gib", "before GiB", "{:.2f}"),
                   ("peak_gib", "peak GiB", "{:.2f}"), ("estimate_gib", "nst_tf.memory estimate GiB", "{:.2f}")],
                  rows)
    return SuiteResult("memory", machine_info(), {"backbone": backbone}, {"memory": table},
                       ["Peak = ru_maxrss of a fresh process running 2 Adam steps; goal: 2048 px within 16 GiB."])


def _memory_worker():
    from nst_tf import memory

    backbone, size, precision = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    config = StyleConfig(backbone=backbone, weights=None, iterations=2, image_size=size, precision=precision)
    content = np.random.default_rng(0).uniform(0, 255, (1, size, size, 3)).astype("float32")
    extractor = optimize.make_extractor(config)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    optimize.stylize(content, [content[:, :256, :256]], config, progress=False, extractor=extractor)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    estimate = memory.estimate_step_bytes(config, size, size, precision) / 2**30
    print(base, peak, estimate)
