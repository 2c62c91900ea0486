"""Benchmarks: FLOP counts from layers, this machine's convolution peak, timing, and suites.

Each suite is a function ``run_<name>_suite(...) -> SuiteResult`` registered in
:data:`SUITES` under the name ``scripts/benchmark.py`` takes as its subcommand:

* ``optimize`` (issue 2): median seconds per optimization step of
  :func:`nst_tf.optimize.make_step` at 256 and 512 px for each backbone, the conv
  FLOPs of the truncated network, achieved GFLOP/s and the fraction of this
  machine's measured float32 3x3-convolution peak.
* ``optimize-variants``: the same step under alternative settings (XLA, threads,
  oneDNN switches, Gram implementation, pooling, loop synchronization), each in
  its own worker process so that environment variables take effect, timed
  round-robin side by side with a baseline.

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

import contextlib
import dataclasses
import datetime
import gc
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Mapping

import keras
import numpy as np
import tensorflow as tf

from nst_tf import losses, optimize
from nst_tf.backbones import SQUEEZENET_WEIGHTS_FILE
from nst_tf.config import StyleConfig

GIGA = 1e9

# Where ../shared/assets keeps the SqueezeNet v1.1 ImageNet weights (relative to the repository root).
SHARED_SQUEEZENET_WEIGHTS = (
    pathlib.Path(__file__).resolve().parents[2] / "shared" / "assets" / "weights" / SQUEEZENET_WEIGHTS_FILE
)

# Convolutions timed for the float32 3x3 peak: (H, W, C_in, C_out), batch 1, stride 1, same padding.
# The first is the reference shape; the others are VGG layer shapes at 512 px (block4, block2).
PEAK_SHAPES = ((128, 128, 256, 256), (64, 64, 512, 512), (256, 256, 128, 128))

BACKBONE_NAMES = ("vgg19", "vgg16", "squeezenet1_1")


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
        dict with ``cpu_model`` (``/proc/cpuinfo`` ``model name``), ``cpu_family`` /
        ``cpu_model_number`` (to tell CPU generations apart when the name is generic),
        ``cpu_flags`` (the AVX-512 / AMX ones), ``logical_cpus``, ``usable_cpus``
        (scheduler affinity), ``memory_gib``, ``tensorflow``, ``keras``, ``numpy``,
        ``python``, ``platform``, ``env`` (performance-relevant environment variables:
        ``TF_*``, ``OMP_*``, ``KMP_*``, ``ONEDNN_*``, ``DNNL_*``, ``MALLOC_*``),
        ``loadavg`` (1, 5, 15 min) and ``date`` (UTC, ISO 8601).
    """
    cpuinfo = _read("/proc/cpuinfo")
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = [f for f in fields.get("flags", "").split() if f.startswith(("avx512", "amx", "avx_vnni"))]
    meminfo = _read("/proc/meminfo")
    mem_kib = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")), 0)
    env_prefixes = ("TF_", "OMP_", "KMP_", "ONEDNN_", "DNNL_", "MALLOC_", "GLIBC_TUNABLES")
    return {
        "cpu_model": fields.get("model name", platform.processor() or "unknown"),
        "cpu_family": fields.get("cpu family"),
        "cpu_model_number": fields.get("model"),
        "cpu_flags": flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "env": {k: v for k, v in sorted(os.environ.items())
                if k.startswith(env_prefixes) and k != "TF_CLI_CONFIG_FILE"},
        "loadavg": _loadavg(),
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


def busy_processes(interval=0.5, threshold=0.05):
    """Other processes using CPU now (this process and its children left out).

    Args:
        interval: float. Sampling interval, seconds.
        threshold: float. Minimum CPU share (1.0 = one core) to report.

    Returns:
        list of dicts ``{"pid", "cpu" (cores busy, float), "command" (first 120 chars)}``,
        busiest first.
    """
    before = _cpu_ticks()
    time.sleep(interval)
    after = _cpu_ticks()
    return _busy(before, after, interval, threshold)


def _busy(before, after, seconds, threshold=0.0):
    hz = os.sysconf("SC_CLK_TCK")
    own = _own_tree(after)
    busy = []
    for pid, (ticks, _) in after.items():
        if pid in own or pid not in before:
            continue
        share = (ticks - before[pid][0]) / hz / seconds
        if share >= threshold and share > 0:
            busy.append({"pid": pid, "cpu": round(share, 2), "command": _cmdline(pid)[:120]})
    return sorted(busy, key=lambda p: -p["cpu"])


def _own_tree(ticks):
    """This process and its descendants (benchmark workers), from ``{pid: (ticks, ppid)}``."""
    own = {os.getpid()}
    grew = True
    while grew:
        grew = False
        for pid, (_, parent) in ticks.items():
            if parent in own and pid not in own:
                own.add(pid)
                grew = True
    return own


class LoadMonitor:
    """Measures, in a background thread, how much CPU other processes take during a benchmark.

    This machine is shared; a benchmark records the background load next to each
    measurement so that disturbed numbers can be recognized.  Processes of this
    benchmark (this process and its worker children) are not counted.

    Args:
        interval: float. Sampling period, seconds.

    Use ``with LoadMonitor() as load: ...; cores, top = load.mark()``.
    """

    def __init__(self, interval=1.0):
        import threading

        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nst_tf-load-monitor")
        self._lock = threading.Lock()
        self._seconds = 0.0
        self._cpu = {}  # pid -> core-seconds since the last mark

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        hz = os.sysconf("SC_CLK_TCK")
        previous, last = _cpu_ticks(), time.monotonic()
        while not self._stop.wait(self.interval):
            current, now = _cpu_ticks(), time.monotonic()
            own = _own_tree(current)
            with self._lock:
                self._seconds += now - last
                for pid, (ticks, _) in current.items():
                    if pid not in own and pid in previous and ticks > previous[pid][0]:
                        self._cpu[pid] = self._cpu.get(pid, 0.0) + (ticks - previous[pid][0]) / hz
            previous, last = current, now

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
        top = sorted(cpu.items(), key=lambda item: -item[1])[:3]
        return (sum(cpu.values()) / seconds,
                [f"{pid} {used / seconds:.2f} {_cmdline(pid)[:70]}" for pid, used in top if used / seconds >= 0.05])


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


@contextlib.contextmanager
def paused_processes(pattern="scripts/train.py", max_seconds=600, rescan_seconds=1.0):
    """Pauses (SIGSTOP) other Python processes whose command line contains ``pattern``.

    Used for the final measurements on a machine shared with long training jobs.
    Matching processes that start during the pause are paused too (checked every
    ``rescan_seconds``).  All are resumed (SIGCONT) on exit, on Ctrl-C and on SIGTERM;
    a detached watchdog (``sleep max_seconds; kill -CONT <pids>``) resumes them even
    if this process is killed, and bounds the pause to ``max_seconds``.

    Args:
        pattern: str. Substring of the command line (``/proc/<pid>/cmdline``) to match;
            only processes run by a Python interpreter match.
        max_seconds: float. Longest pause, seconds.
        rescan_seconds: float. How often to look for new matching processes, seconds.

    Yields:
        list of int, the paused pids; it grows when new matching processes are paused.
    """
    import tempfile
    import threading

    own = {os.getpid(), os.getppid()}
    paused = []
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + max_seconds
    handle, pid_file = tempfile.mkstemp(prefix="nst_tf_paused_", suffix=".pids")
    os.close(handle)
    watchdog = subprocess.Popen(
        ["sh", "-c", f'sleep {int(max_seconds)}; kill -CONT $(cat "{pid_file}") 2>/dev/null; rm -f "{pid_file}"'],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def pause_new():
        with lock:
            if time.monotonic() > deadline:
                return
            for pid in _python_pids(pattern):
                if pid in own or pid in paused:
                    continue
                try:
                    os.kill(pid, signal.SIGSTOP)
                except (ProcessLookupError, PermissionError):
                    continue
                paused.append(pid)
                with open(pid_file, "w", encoding="ascii") as pids:
                    pids.write(" ".join(map(str, paused)))

    def rescan():
        while not stop.wait(rescan_seconds):
            pause_new()

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=rescan, daemon=True, name="nst_tf-pause-rescan")
    try:
        signal.signal(signal.SIGTERM, terminate)
        pause_new()
        thread.start()
        yield paused
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        with lock:
            for pid in paused:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(watchdog.pid, signal.SIGKILL)  # the watchdog shell and its sleep, both ours.
        watchdog.wait()
        with contextlib.suppress(OSError):
            os.remove(pid_file)
        signal.signal(signal.SIGTERM, previous)


def _python_pids(pattern):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")).startswith("python") and \
                pattern in b" ".join(argv).decode(errors="replace"):
            pids.append(int(entry))
    return pids


def _cpu_ticks():
    """``{pid: (utime + stime clock ticks, parent pid)}`` of every process."""
    ticks = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = _read(f"/proc/{entry}/stat")
                fields = stat[stat.rindex(")") + 2:].split()
                ticks[int(entry)] = (int(fields[11]) + int(fields[12]), int(fields[1]))
            except (OSError, ValueError, IndexError):
                continue
    return ticks


def _cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _loadavg():
    try:
        return [float(x) for x in _read("/proc/loadavg").split()[:3]]
    except (OSError, ValueError):
        return None


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


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


def _peak_first(peak_shapes, repeats, load):
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


def resolve_weights(backbone, weights="auto"):
    """Weights for a compute benchmark: the real SqueezeNet file when present, else random.

    Args:
        backbone: str.
        weights: ``"auto"`` (SqueezeNet: :data:`SHARED_SQUEEZENET_WEIGHTS` if present;
            VGG: random, since ImageNet VGG weights are not available offline and the
            compute does not depend on the values), ``None`` (random) or a path.

    Returns:
        ``(weights, label)``: what to pass to StyleConfig and a short description
        (``"random"``, ``"file"`` (a weights file, e.g. SqueezeNet's ImageNet weights)
        or ``"imagenet"``).
    """
    if weights == "auto":
        if backbone == "squeezenet1_1" and SHARED_SQUEEZENET_WEIGHTS.is_file():
            weights = str(SHARED_SQUEEZENET_WEIGHTS)
        else:
            weights = None
    return weights, ("random" if weights is None else "file" if weights != "imagenet" else "imagenet")


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
    """Issue 2: seconds per optimization step, GFLOP/s and the fraction of the conv peak.

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
            probe, tables["peak"], (peak_value, dgrad_peak) = _peak_first(peak_shapes, repeats, load)
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
            [sys.executable, "-c", "from nst_tf.benchmark import _variant_worker; _variant_worker()"],
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
            probe, tables["peak"], (peak_value, dgrad_peak) = _peak_first(peak_shapes, repeats, load)
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


SUITES = {
    "optimize": run_optimize_suite,
    "optimize-variants": run_optimize_variants_suite,
}
