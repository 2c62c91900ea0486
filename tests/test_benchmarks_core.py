"""benchmarks.core: FLOP counts by hand, timing with a fake clock, machine and background load, conv peak."""

import os
import subprocess
import sys

import keras
import psutil
import pytest
import tensorflow as tf

from benchmarks import core
from nst_tf.features import FeatureExtractor


# ---------------------------------------------------------------- paths


def test_assets_dir_is_the_environment_variable_else_next_to_the_repository(tmp_path, monkeypatch):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    monkeypatch.delenv("NST_TF_ASSETS", raising=False)
    assert core.repository_root() == tmp_path / "repo"
    assert core.assets_dir() == tmp_path / "shared" / "assets"
    monkeypatch.setenv("NST_TF_ASSETS", str(tmp_path / "elsewhere"))
    assert core.assets_dir() == tmp_path / "elsewhere"


def test_resolve_weights_takes_the_shared_squeezenet_file_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_TF_ASSETS", str(tmp_path))
    assert core.resolve_weights("squeezenet1_1") == (None, "random")
    weights = tmp_path / "weights" / core.SQUEEZENET_WEIGHTS_FILE
    weights.parent.mkdir()
    weights.write_bytes(b"x")
    assert core.resolve_weights("squeezenet1_1") == (str(weights), "file")
    assert core.resolve_weights("vgg19") == (None, "random")  # No ImageNet VGG offline; compute is the same.
    assert core.resolve_weights("vgg19", "imagenet") == ("imagenet", "imagenet")


# ---------------------------------------------------------------- FLOP counting


def _tiny_model():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="valid", activation="relu", name="b")(x)
    x = keras.layers.MaxPooling2D(1, name="pool")(x)
    x = keras.layers.Conv2D(4, 1, groups=2, name="grouped")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(x)
    return keras.Model(inputs, x)


def test_conv_flops_matches_hand_count():
    counts = core.conv_flops(_tiny_model(), (2, 8, 8, 3))
    # 2 * k_h * k_w * c_in/groups * c_out * B * h_out * w_out, by hand:
    expected = {
        "a": ((3, 3, 3, 4), (2, 8, 8, 4), 2 * 3 * 3 * 3 * 4 * 2 * 8 * 8),  # 27648
        "b": ((3, 3, 4, 6), (2, 3, 3, 6), 2 * 3 * 3 * 4 * 6 * 2 * 3 * 3),  # valid, stride 2: (8 - 3) // 2 + 1 = 3
        "grouped": ((1, 1, 3, 4), (2, 3, 3, 4), 2 * 1 * 1 * 3 * 4 * 2 * 3 * 3),  # 6 channels in 2 groups
        "depthwise": ((3, 3, 4, 2), (2, 3, 3, 8), 2 * 3 * 3 * 4 * 2 * 2 * 3 * 3),
    }
    assert [c.layer for c in counts] == list(expected)
    for count in counts:
        kernel, shape, flops = expected[count.layer]
        assert (count.kernel_shape, count.output_shape, count.flops) == (kernel, shape, flops)
    assert sum(c.flops for c in counts) == 27648 + 7776 + 432 + 2592


def test_conv_flops_refuses_layers_it_cannot_count():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(2, 3, name="up")(inputs))
    with pytest.raises(ValueError, match="Received: layer 'up'"):
        core.conv_flops(model, (1, 8, 8, 3))


def test_gram_flops():
    assert core.gram_flops((1, 4, 5, 3)) == 2 * 4 * 5 * 3 * 3


@pytest.mark.slow
def test_step_flops_of_vgg19_follows_the_architecture():
    extractor = FeatureExtractor(["block4_conv2", "block1_conv1", "block5_conv1"], "vgg19", None)
    size = 32
    # (side divisor, c_in, c_out) of VGG19's convolutions up to block5_conv1.
    convs = [(1, 3, 64), (1, 64, 64), (2, 64, 128), (2, 128, 128), (4, 128, 256)] + [(4, 256, 256)] * 3 + \
        [(8, 256, 512)] + [(8, 512, 512)] * 3 + [(16, 512, 512)]
    forward = sum(2 * 9 * c_in * c_out * (size // d) ** 2 for d, c_in, c_out in convs)
    gram = 2 * (size ** 2 * 64 ** 2 + (size // 16) ** 2 * 512 ** 2)
    counts = core.step_flops(extractor, (1, size, size, 3), ["block1_conv1", "block5_conv1"])
    assert counts == {"conv_layers": 13, "forward_conv_flops": forward, "step_conv_flops": 2 * forward,
                      "step_gram_flops": 2 * gram}


# ---------------------------------------------------------------- timing


def test_time_side_by_side_rotates_and_keeps_every_sample():
    calls = []

    def timer(name, seconds):
        def run():
            calls.append(name)
            return seconds
        return run

    timings = core.time_side_by_side({"a": timer("a", 1.0), "b": timer("b", 3.0)}, warmup=1, repeats=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then rounds rotated by one.
    assert timings["a"].seconds == (1.0, 1.0, 1.0) and timings["b"].median == 3.0 and timings["b"].best == 3.0
    with pytest.raises(ValueError, match="Received: repeats=0"):
        core.time_side_by_side({"a": timer("a", 1.0)}, repeats=0)


def test_stopwatch_and_time_call_time_with_the_performance_counter(monkeypatch):
    clock = iter([10.0, 10.5, 20.0, 22.0, 30.0, 30.25])
    monkeypatch.setattr(core.time, "perf_counter", lambda: next(clock))
    timing = core.time_call(lambda: None, warmup=1, repeats=2)
    assert timing.seconds == (2.0, 0.25) and timing.median == pytest.approx(1.125) and timing.best == 0.25


# ---------------------------------------------------------------- machine and background load


def test_machine_info_describes_cpu_memory_and_versions():
    machine = core.machine_info()
    assert machine["tensorflow"] == tf.__version__ and machine["keras"] == keras.__version__
    assert machine["logical_cpus"] == psutil.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        assert machine["usable_cpus"] == len(os.sched_getaffinity(0))
    assert machine["memory_gib"] == round(psutil.virtual_memory().total / 2**30, 1)
    assert len(machine["loadavg"]) == 3
    assert f"{machine['usable_cpus']} cores" in core.describe_machine(machine)


def test_background_load_is_cpu_seconds_per_wall_second():
    before = {1: (10.0, "python train.py"), 2: (5.0, "idle"), 3: (1.0, "gone")}
    after = {1: (13.0, "python train.py"), 2: (5.0, "idle"), 4: (9.0, "new")}
    busy = core.background_load(before, after, 2.0)
    assert busy == [{"pid": 1, "cpu": 1.5, "command": "python train.py"}]  # Idle, ended and new ones left out.
    assert core.background_load(before, after, 2.0, threshold=2.0) == []


def test_load_monitor_marks_the_mean_load_between_marks():
    monitor = core.LoadMonitor()
    assert monitor.mark() == (0.0, [])
    monitor.add({1: (0.0, "a"), 2: (0.0, "b")}, {1: (2.0, "a"), 2: (0.5, "b")}, 2.0)
    monitor.add({1: (2.0, "a"), 2: (0.5, "b")}, {1: (4.0, "a"), 2: (0.5, "b")}, 2.0)
    cores, top = monitor.mark()
    assert cores == pytest.approx((4.0 + 0.5) / 4.0)
    assert top == ["1 1.00 a", "2 0.12 b"]
    assert monitor.mark() == (0.0, [])  # A mark starts a new window.


def test_own_children_are_not_background_load():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        sample = core._cpu_seconds()
        assert os.getpid() not in sample and child.pid not in sample
    finally:
        child.stdin.close()  # The child ends on end of input; no signal is sent.
        child.wait(timeout=60)


# ---------------------------------------------------------------- conv peak


def test_measure_conv_peak_rows_follow_from_their_timings():
    rows = core.measure_conv_peak(shapes=[(8, 8, 4, 4), (4, 4, 8, 8)], warmup=1, repeats=1)
    assert [r["shape"] for r in rows] == ["[1,8,8,4] -> 4", "[1,4,4,8] -> 8"]
    for row, (h, w, c_in, c_out) in zip(rows, [(8, 8, 4, 4), (4, 4, 8, 8)]):
        assert row["gflop"] == pytest.approx(2 * 9 * c_in * c_out * h * w / 1e9)
        assert row["forward_gflops"] == pytest.approx(row["gflop"] / row["forward_s"])
        assert row["forward_input_grad_gflops"] == pytest.approx(2 * row["gflop"] / row["forward_input_grad_s"])
    assert core.peak_of(rows) == (max(r["forward_gflops"] for r in rows),
                                  max(r["forward_input_grad_gflops"] for r in rows))
