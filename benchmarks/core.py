"""Shared parts of the benchmark suites: results, machine and load, timing, FLOPs, conv peak.

FLOP convention (used by every suite, stated in BENCHMARKS.md):

* One FLOP is one floating-point add or multiply; a multiply-add is 2 FLOPs.
  GFLOP = 1e9 FLOP; GFLOP/s = 1e9 FLOP per second.
* Forward conv FLOPs of a ``Conv2D`` / ``DepthwiseConv2D`` layer:
  ``2 * k_h * k_w * (c_in / groups) * c_out * B * h_out * w_out``
  (``2 * prod(kernel.shape) * B * h_out * w_out``), output sizes from the
  model's ``compute_output_shape`` at the given input size.  Bias, ReLU, pooling,
  concatenation are not counted.
* Optimization step conv FLOPs = 2 x forward conv FLOPs: the forward pass plus
  the gradient with respect to the layer *input* (a transposed convolution of
  the same size), down to the image.  The backbone is frozen, so no weight
  gradient is computed (TensorFlow prunes the unused ``Conv2DBackpropFilter``).
* Gram matrices are counted separately (``2 * B * H * W * C^2`` forward; TensorFlow's
  einsum gradient computes one product per operand, so 3x that per step) and are
  *not* in the achieved GFLOP/s, which is therefore a conv-only figure comparable
  to the conv peak.  Losses, total variation, Adam and the clip are O(pixels) and
  not counted.

Timing: every suite warms up (tracing, oneDNN primitive creation, allocator),
then times ``repeats`` repetitions and reports the median (and the minimum).
Alternatives are timed round-robin in one run (:func:`time_side_by_side`) so that
background load on this shared machine hits them alike.
"""

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import statistics
import time
from typing import Callable, Dict, List, Mapping

import cpuinfo
import keras
import numpy as np
import psutil
import tensorflow as tf

from nst_tf.backbones import SQUEEZENET_WEIGHTS_FILE

GIGA = 1e9

# Convolutions timed for the float32 3x3 peak: (H, W, C_in, C_out), batch 1, stride 1, same padding.
# The first is the reference shape of BENCHMARKS.md; the others are VGG layer shapes at 512 px (block4, block2).
PEAK_SHAPES = ((128, 128, 256, 256), (64, 64, 512, 512), (256, 256, 128, 128))


# ----------------------------------------------------------------------------- paths


def repository_root(start=None):
    """The checkout the benchmarks run in: the nearest folder holding ``.git`` at or above `start`.

    Args:
        start: path-like or None. Defaults to the current folder.

    Returns:
        pathlib.Path; `start` itself when no enclosing checkout is found.
    """
    start = pathlib.Path(start or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def assets_dir():
    """The shared assets (test images, SqueezeNet weights, training photos).

    ``$NST_TF_ASSETS`` when set (``scripts/benchmark.py --assets`` sets it), else
    ``../shared/assets`` next to :func:`repository_root`.

    Returns:
        pathlib.Path (it may not exist; suites that need a file say which).
    """
    return pathlib.Path(os.environ.get("NST_TF_ASSETS") or repository_root().parent / "shared" / "assets")


def resolve_weights(backbone, weights="auto"):
    """Weights for a compute benchmark: the real SqueezeNet file when present, else random.

    Args:
        backbone: str.
        weights: ``"auto"`` (SqueezeNet: the file in :func:`assets_dir` if present;
            VGG: random, since ImageNet VGG weights are not available offline and the
            compute does not depend on the values), ``None`` (random) or a path.

    Returns:
        ``(weights, label)``: what to pass to StyleConfig and a short description
        (``"random"``, ``"file"`` (a weights file, e.g. SqueezeNet's ImageNet weights)
        or ``"imagenet"``).
    """
    if weights == "auto":
        shared = assets_dir() / "weights" / SQUEEZENET_WEIGHTS_FILE
        if backbone == "squeezenet1_1" and shared.is_file():
            weights = str(shared)
        else:
            weights = None
    return weights, ("random" if weights is None else "file" if weights != "imagenet" else "imagenet")


# ----------------------------------------------------------------------------- results


@dataclasses.dataclass
class Table:
    """One table of a suite's results.

    Attributes:
        title: str, shown above the table.
        columns: list of ``(key, header, format)``; ``format`` is a ``str.format`` spec
            such as ``"{:.3f}"`` applied to ``row[key]`` (``None`` prints ``-``).
        rows: list of dicts (JSON-serializable values).
    """

    title: str
    columns: List[tuple]
    rows: List[dict]


@dataclasses.dataclass
class SuiteResult:
    """What a suite returns.

    Attributes:
        suite: str, the suite name (``"optimize"``).
        machine: dict from :func:`machine_info`.
        settings: dict of the suite's arguments.
        tables: dict ``{name: Table}``, in display order.
        notes: list of str, facts a reader needs (what was measured, what was not).
        command: str, the command line that produced it (set by the caller).
    """

    suite: str
    machine: dict
    settings: dict
    tables: Dict[str, Table]
    notes: List[str] = dataclasses.field(default_factory=list)
    command: str = ""

    def to_json(self):
        """Returns the result as a JSON string (tables as lists of row dicts)."""
        data = dataclasses.asdict(self)
        data["tables"] = {name: table.rows for name, table in self.tables.items()}
        return json.dumps(data, indent=2, default=str)

    def to_markdown(self):
        """Returns a Markdown section: machine, command, date, one table per entry, notes."""
        machine = self.machine
        lines = [
            f"### `{self.suite}` — {machine.get('date', '')}",
            "",
            f"- Machine: {describe_machine(machine)}",
        ]
        if self.command:
            lines.append(f"- Command: `{self.command}`")
        lines.append(f"- Settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}")
        for table in self.tables.values():
            lines += ["", f"**{table.title}**", "", format_table(table)]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def format_table(table):
    """Renders a :class:`Table` as a GitHub Markdown table (str)."""
    headers = [header for _, header, _ in table.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in table.rows:
        cells = []
        for key, _, fmt in table.columns:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- machine


def machine_info():
    """Describes this machine and software, for the record of a benchmark.

    Returns:
        dict with ``cpu_model``, ``cpu_family`` / ``cpu_model_number`` (to tell CPU
        generations apart when the name is generic), ``cpu_flags`` (the AVX-512 / AMX
        ones), ``logical_cpus``, ``usable_cpus`` (scheduler affinity), ``memory_gib``,
        ``tensorflow``, ``keras``, ``numpy``, ``python``, ``platform``, ``env``
        (performance-relevant environment variables: ``TF_*``, ``OMP_*``, ``KMP_*``,
        ``ONEDNN_*``, ``DNNL_*``, ``MALLOC_*``), ``loadavg`` (1, 5, 15 min) and ``date``
        (UTC, ISO 8601).
    """
    info = cpuinfo.get_cpu_info()  # psutil does not report the CPU model and flags.
    flags = []
    for flag in info.get("flags", []):  # py-cpuinfo lists some flags under two spellings (avx512vnni).
        if flag.startswith(("avx512", "amx", "avx_vnni")) and flag.replace("_", "") not in {
                f.replace("_", "") for f in flags}:
            flags.append(flag)
    env_prefixes = ("TF_", "OMP_", "KMP_", "ONEDNN_", "DNNL_", "MALLOC_", "GLIBC_TUNABLES")
    try:
        usable = len(psutil.Process().cpu_affinity())
    except (AttributeError, psutil.Error):  # cpu_affinity is not available on macOS.
        usable = psutil.cpu_count()
    return {
        "cpu_model": info.get("brand_raw") or platform.processor() or "unknown",
        "cpu_family": None if info.get("family") is None else str(info["family"]),
        "cpu_model_number": None if info.get("model") is None else str(info["model"]),
        "cpu_flags": flags,
        "logical_cpus": psutil.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith(env_prefixes) and k != "TF_CLI_CONFIG_FILE"},
        "loadavg": [round(x, 2) for x in psutil.getloadavg()],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def describe_machine(machine):
    """One line from :func:`machine_info`: CPU, cores, memory, TF / Keras / Python versions."""
    family = ""
    if machine.get("cpu_family"):
        family = f" (family {machine['cpu_family']}, model {machine['cpu_model_number']})"
    bf16 = ", AVX512_BF16" if "avx512_bf16" in machine.get("cpu_flags", ()) else ""
    return (f"{machine['cpu_model']}{family}{bf16}, {machine['usable_cpus']} cores, {machine['memory_gib']} GiB, "
            f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, Python {machine['python']}")


def _cpu_seconds():
    """``{pid: (user + system CPU seconds, command line)}`` of every process but this one and its children."""
    me = psutil.Process()
    own = {me.pid} | {child.pid for child in me.children(recursive=True)}
    seconds = {}
    for process in psutil.process_iter(["pid", "cpu_times", "cmdline", "name"]):
        info = process.info
        if info["pid"] in own or info["cpu_times"] is None:
            continue
        command = " ".join(info["cmdline"] or []) or info["name"] or "?"
        seconds[info["pid"]] = (info["cpu_times"].user + info["cpu_times"].system, command)
    return seconds


def background_load(before, after, seconds, threshold=0.0):
    """Other processes' CPU use between two :func:`_cpu_seconds` samples.

    Args:
        before, after: ``{pid: (cpu seconds, command)}``.
        seconds: float. Wall time between the samples.
        threshold: float. Smallest share, cores, to list.

    Returns:
        list of ``{"pid", "cpu" (cores, float), "command" (first 120 chars)}``, busiest first;
        processes that started or ended between the samples are left out.
    """
    busy = []
    for pid, (used, command) in after.items():
        if pid in before:
            share = (used - before[pid][0]) / seconds
            if share > 0 and share >= threshold:
                busy.append({"pid": pid, "cpu": round(share, 2), "command": command[:120]})
    return sorted(busy, key=lambda p: -p["cpu"])


def busy_processes(interval=0.5, threshold=0.05):
    """Other processes using CPU now (this process and its children left out).

    Args:
        interval: float. Sampling interval, seconds.
        threshold: float. Minimum CPU share (1.0 = one core) to report.

    Returns:
        list of dicts as :func:`background_load` returns.
    """
    before = _cpu_seconds()
    time.sleep(interval)
    return background_load(before, _cpu_seconds(), interval, threshold)


class LoadMonitor:
    """Measures, in a background thread, how much CPU other processes take during a benchmark.

    The machine may be shared; a benchmark records the background load next to each
    measurement so that disturbed numbers can be recognized. It never pauses or
    signals other processes. Processes of this benchmark (this process and its worker
    children) are not counted.

    Args:
        interval: float. Sampling period, seconds.

    Use ``with LoadMonitor() as load: ...; cores, top = load.mark()``.
    """

    def __init__(self, interval=1.0):
        import threading

        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="benchmark-load-monitor")
        self._lock = threading.Lock()
        self._seconds = 0.0
        self._cpu = {}  # pid -> [core-seconds since the last mark, command]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        previous, last = _cpu_seconds(), time.monotonic()
        while not self._stop.wait(self.interval):
            current, now = _cpu_seconds(), time.monotonic()
            self.add(previous, current, now - last)
            previous, last = current, now

    def add(self, before, after, seconds):
        """Adds one sampling interval: ``{pid: (cpu seconds, command)}`` before and after it."""
        with self._lock:
            self._seconds += seconds
            for entry in background_load(before, after, 1.0):
                used = self._cpu.setdefault(entry["pid"], [0.0, entry["command"]])
                used[0] += entry["cpu"]

    def mark(self):
        """Background load since the previous mark (or the start).

        Returns:
            ``(cores, top)``: mean CPU cores used by other processes (float; 0.0 before
            the first sample) and up to three ``"pid cores command"`` strings, busiest first.
        """
        with self._lock:
            seconds, cpu = self._seconds, self._cpu
            self._seconds, self._cpu = 0.0, {}
        if seconds <= 0:
            return 0.0, []
        top = sorted(cpu.items(), key=lambda item: -item[1][0])[:3]
        return (sum(used for used, _ in cpu.values()) / seconds,
                [f"{pid} {used / seconds:.2f} {command[:70]}" for pid, (used, command) in top
                 if used / seconds >= 0.05])


def wait_for_quiet(max_seconds=300, threshold=0.25, window=3.0):
    """Waits until other processes use less than ``threshold`` cores over ``window`` seconds.

    Args:
        max_seconds: float. Give up after this long.
        threshold: float. Cores.
        window: float. Seconds per check.

    Returns:
        bool: True when the machine became quiet, False on timeout.
    """
    deadline = time.monotonic() + max_seconds
    while True:
        busy = busy_processes(window)
        if sum(p["cpu"] for p in busy) < threshold:
            return True
        if time.monotonic() > deadline:
            return False


# ----------------------------------------------------------------------------- timing


@dataclasses.dataclass(frozen=True)
class Timing:
    """Repeated measurements of one thing.

    Attributes:
        seconds: tuple of float, one wall-clock duration per repetition, seconds.
    """

    seconds: tuple

    @property
    def median(self):
        """Median duration, seconds."""
        return statistics.median(self.seconds)

    @property
    def best(self):
        """Shortest duration, seconds (the least disturbed repetition)."""
        return min(self.seconds)


def stopwatch(fn):
    """Wraps ``fn()`` into a timer: a callable returning the seconds one call took.

    ``fn`` must block until its work is done (return NumPy values, or call
    ``.numpy()``); TensorFlow CPU function calls already return when finished.
    """

    def timer():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return timer


def time_side_by_side(timers: Mapping[str, Callable[[], float]], warmup=2, repeats=5):
    """Times alternatives round-robin, so background load hits them alike.

    Each timer is first called ``warmup`` times (results dropped); then each of
    ``repeats`` rounds calls every timer once, the order rotated by one per round
    so that no alternative always runs first (or right after another one).

    Args:
        timers: ``{name: timer}``; a timer runs one repetition and returns its duration
            in seconds (see :func:`stopwatch`; worker processes time themselves).
        warmup: int >= 0. Untimed calls per timer, before timing.
        repeats: int >= 1. Timed calls per timer.

    Returns:
        dict ``{name: Timing}``.

    Raises:
        ValueError: ``repeats < 1`` or ``warmup < 0``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0. Received: repeats={repeats}, warmup={warmup}")
    names = list(timers)
    for name in names:
        for _ in range(warmup):
            timers[name]()
    samples = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(float(timers[name]()))
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def time_call(fn, warmup=2, repeats=5):
    """Times ``fn()`` alone: ``warmup`` untimed calls, then ``repeats`` timed ones. Returns Timing."""
    return time_side_by_side({"call": stopwatch(fn)}, warmup, repeats)["call"]


# ----------------------------------------------------------------------------- FLOPs


@dataclasses.dataclass(frozen=True)
class ConvFlops:
    """Forward FLOPs of one convolution layer at one input size.

    Attributes:
        layer: str, the Keras layer name.
        kernel_shape: tuple ``(k_h, k_w, c_in / groups, c_out)`` (depthwise:
            ``(k_h, k_w, c_in, multiplier)``), as Keras stores the kernel.
        output_shape: tuple ``(B, h_out, w_out, c_out)``.
        flops: int, ``2 * prod(kernel_shape) * B * h_out * w_out``.
    """

    layer: str
    kernel_shape: tuple
    output_shape: tuple
    flops: int


_COUNTED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
_UNCOUNTED = (keras.layers.Conv1D, keras.layers.Conv3D, keras.layers.Conv2DTranspose,
              keras.layers.SeparableConv2D, keras.layers.Conv3DTranspose, keras.layers.Conv1DTranspose)


def conv_flops(model, input_shape):
    """Forward FLOPs of every 2-D convolution of a functional model, from its layers.

    Args:
        model: a functional ``keras.Model`` whose convolutions are top-level
            ``Conv2D`` / ``DepthwiseConv2D`` layers, each called once (the
            ``FeatureExtractor.network`` of every backbone).
        input_shape: tuple ``(B, H, W, C)``, pixels.

    Returns:
        list of :class:`ConvFlops`, in the model's layer order.

    Raises:
        ValueError: the model has a convolution this counter does not handle (a
            transposed, separable, 1-D or 3-D one, or one nested inside another
            layer), so a count would be silently low.  The message names the layer.
    """
    convs = []
    for layer in model.layers:
        if isinstance(layer, _UNCOUNTED):
            raise ValueError(f"conv_flops counts Conv2D and DepthwiseConv2D only. Received: layer {layer.name!r} "
                             f"of type {type(layer).__name__}")
        if isinstance(layer, _COUNTED):
            convs.append(layer)
            continue
        nested = [sub.name for sub in layer._flatten_layers(include_self=False) if isinstance(sub, keras.layers.Layer)
                  and isinstance(sub, _COUNTED + _UNCOUNTED)]
        if nested:
            raise ValueError(f"conv_flops counts top-level convolutions only. Received: layer {layer.name!r} "
                             f"containing {nested[:3]}")
    if not convs:
        return []
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    shapes = probe.compute_output_shape(tuple(input_shape))
    if len(convs) == 1 and not isinstance(shapes[0], (tuple, list)):
        shapes = [shapes]
    counts = []
    for layer, shape in zip(convs, shapes):
        kernel = tuple(int(d) for d in layer.kernel.shape)
        shape = tuple(int(d) for d in shape)
        spatial = shape[0] * shape[1] * shape[2]
        counts.append(ConvFlops(layer.name, kernel, shape, 2 * int(np.prod(kernel)) * spatial))
    return counts


def gram_flops(feature_shape):
    """Forward FLOPs of one Gram matrix ``F^T F`` of features ``[B, H, W, C]``: ``2 B H W C^2``."""
    batch, height, width, channels = (int(d) for d in feature_shape)
    return 2 * batch * height * width * channels * channels


def step_flops(extractor, input_shape, style_layers):
    """Counts one optimization step of :class:`~nst_tf.optimize.StyleObjective` (see module doc).

    Args:
        extractor: FeatureExtractor.
        input_shape: tuple ``(B, H, W, 3)``.
        style_layers: names of the style layers (each adds a Gram matrix).

    Returns:
        dict of ints: ``conv_layers`` (count), ``forward_conv_flops``, ``step_conv_flops``
        (2 x forward), ``step_gram_flops`` (2 x forward Gram FLOPs: the product and the
        one-matmul gradient of ``losses.gram_matrix``).
    """
    convs = conv_flops(extractor.network, input_shape)
    forward = sum(c.flops for c in convs)
    names = list(extractor.layer_names)
    shapes = extractor.network.compute_output_shape(tuple(input_shape))
    if len(names) == 1:
        shapes = [shapes]
    by_name = dict(zip(names, shapes))
    gram = sum(gram_flops(by_name[name]) for name in style_layers)
    return {"conv_layers": len(convs), "forward_conv_flops": forward, "step_conv_flops": 2 * forward,
            "step_gram_flops": 2 * gram}


# ----------------------------------------------------------------------------- conv peak


class ConvPeakProbe:
    """Float32 3x3 convolutions whose throughput is this machine's conv peak.

    For each shape, a stride-1, same-padded 3x3 ``tf.nn.conv2d`` inside ``tf.function``
    (random input, kernel and upstream gradient passed as arguments, so nothing is
    constant-folded) is timed forward only, and forward plus the gradient with respect
    to the input (``Conv2DBackpropInput``: what an optimization step does per layer).
    :meth:`timers` can be timed alone (:func:`measure_conv_peak`) or side by side with
    a step, so that the step and the peak see the same background load.

    Args:
        shapes: tuples ``(H, W, C_in, C_out)``; batch 1.
    """

    def __init__(self, shapes=PEAK_SHAPES):
        @tf.function
        def forward(x, kernel):
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
            return y[0, 0, 0, :1]  # a scalar out keeps the copy-out off the clock; the conv still runs whole.

        @tf.function
        def forward_input_gradient(x, kernel, upstream):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.conv2d(x, kernel, 1, "SAME")
            dx = tape.gradient(y, x, output_gradients=upstream)
            return y[0, 0, 0, :1], dx[0, 0, 0, :1]

        rng = np.random.default_rng(0)
        self.shapes = [tuple(int(d) for d in shape) for shape in shapes]
        self._timers = {}
        for index, (height, width, c_in, c_out) in enumerate(self.shapes):
            x = tf.constant(rng.standard_normal((1, height, width, c_in), np.float32))
            kernel = tf.constant(rng.standard_normal((3, 3, c_in, c_out), np.float32) / np.float32(np.sqrt(9 * c_in)))
            upstream = tf.constant(rng.standard_normal((1, height, width, c_out), np.float32))
            self._timers[f"peak-fwd-{index}"] = stopwatch(lambda x=x, k=kernel: forward(x, k).numpy())
            self._timers[f"peak-dgrad-{index}"] = stopwatch(
                lambda x=x, k=kernel, u=upstream: [t.numpy() for t in forward_input_gradient(x, k, u)])

    def timers(self):
        """``{name: timer}`` for :func:`time_side_by_side`, two per shape."""
        return dict(self._timers)

    def rows(self, timings):
        """Per-shape results from the timings of :meth:`timers` (extra keys are ignored).

        Returns:
            list of dicts, one per shape: ``shape`` (str), ``gflop`` (forward, GFLOP),
            ``forward_s`` / ``forward_input_grad_s`` (median seconds), ``forward_gflops`` /
            ``forward_input_grad_gflops`` (GFLOP/s; the latter counts 2 x ``gflop``).
        """
        rows = []
        for index, (height, width, c_in, c_out) in enumerate(self.shapes):
            flops = 2 * 9 * c_in * c_out * height * width
            forward, both = timings[f"peak-fwd-{index}"].median, timings[f"peak-dgrad-{index}"].median
            rows.append({
                "shape": f"[1,{height},{width},{c_in}] -> {c_out}",
                "gflop": flops / GIGA,
                "forward_s": forward,
                "forward_input_grad_s": both,
                "forward_gflops": flops / forward / GIGA,
                "forward_input_grad_gflops": 2 * flops / both / GIGA,
            })
        return rows


def measure_conv_peak(shapes=PEAK_SHAPES, warmup=3, repeats=10):
    """Measures this machine's float32 3x3 convolution throughput (see :class:`ConvPeakProbe`).

    Args:
        shapes: tuples ``(H, W, C_in, C_out)``; batch 1.
        warmup: int. Untimed calls per function.
        repeats: int. Timed calls per function (all shapes round-robin).

    Returns:
        list of dicts from :meth:`ConvPeakProbe.rows`. The peak is the best
        ``forward_gflops`` (see :func:`peak_of`).
    """
    probe = ConvPeakProbe(shapes)
    return probe.rows(time_side_by_side(probe.timers(), warmup, repeats))


def peak_of(peak_rows):
    """``(forward, forward_input_grad)`` peak GFLOP/s: the best of :func:`measure_conv_peak` rows."""
    return (max(r["forward_gflops"] for r in peak_rows), max(r["forward_input_grad_gflops"] for r in peak_rows))


def peak_first(peak_shapes, repeats, load):
    """Measures the conv peak alone before a suite: ``(probe, table, (forward, dgrad) GFLOP/s)``."""
    probe = ConvPeakProbe(peak_shapes)
    peak_rows = probe.rows(time_side_by_side(probe.timers(), 3, max(repeats, 5)))
    background = load.mark()[0]
    for row in peak_rows:
        row["background_cores"] = background
    table = Table("float32 3x3 convolution peak, measured alone first (median of repetitions)", _PEAK_COLUMNS,
                  peak_rows)
    return probe, table, peak_of(peak_rows)


_PEAK_COLUMNS = [
    ("shape", "3x3 conv, float32", "{}"),
    ("gflop", "GFLOP fwd", "{:.2f}"),
    ("forward_s", "fwd s", "{:.4f}"),
    ("forward_gflops", "fwd GFLOP/s", "{:.0f}"),
    ("forward_input_grad_s", "fwd+dgrad s", "{:.4f}"),
    ("forward_input_grad_gflops", "fwd+dgrad GFLOP/s", "{:.0f}"),
    ("background_cores", "bg cores", "{:.2f}"),
]
