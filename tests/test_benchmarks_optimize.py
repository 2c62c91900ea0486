"""benchmarks.optimize: Gram variants, tiny end-to-end suites, and scripts/benchmark.py."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import core
from benchmarks import optimize as bench_optimize
from nst_tf.features import FeatureExtractor

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- Gram variants


@pytest.mark.parametrize("name", ["matmul", "einsum"])
def test_gram_variants_match_the_library(name):
    features = tf.random.stateless_uniform((2, 5, 4, 3), seed=(1, 2))
    target = tf.random.stateless_uniform((2, 3, 3), seed=(3, 4))
    results = []
    for gram in (bench_optimize.GRAM_IMPLEMENTATIONS["library"], bench_optimize.GRAM_IMPLEMENTATIONS[name]):
        with tf.GradientTape() as tape:
            tape.watch(features)
            value = gram(features)
            loss = tf.reduce_sum(tf.square(value - target))
        results.append((value, tape.gradient(loss, features)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- suites end to end


@pytest.mark.slow
def test_optimize_suite_runs_end_to_end_at_a_tiny_size():
    result = bench_optimize.run_optimize_suite(sizes=[32], backbones=["squeezenet1_1"], warmup=1, repeats=2,
                                          peak_shapes=((8, 8, 4, 4),))
    (row,) = result.tables["steps"].rows
    assert row["backbone"] == "squeezenet1_1" and row["size"] == 32
    assert len(row["step_all_s"]) == 2 and row["step_s"] == pytest.approx(sum(row["step_all_s"]) / 2)
    extractor = FeatureExtractor(["fire3", "conv1", "fire2", "fire5", "fire7"], "squeezenet1_1", None)
    flops = core.step_flops(extractor, (1, 32, 32, 3), ["conv1", "fire2", "fire3", "fire5", "fire7"])
    assert row["step_conv_gflop"] == pytest.approx(flops["step_conv_flops"] / 1e9)
    assert row["step_gflops"] == pytest.approx(row["step_conv_gflop"] / row["step_s"])
    assert row["percent_of_peak"] == pytest.approx(100 * row["step_gflops"] / row["peak_gflops"])
    assert row["step_retraces"] == 0  # the compiled step is not retraced from one iteration to the next.
    markdown = result.to_markdown()
    assert "| squeezenet1_1 | 32 |" in markdown and "% of fp32 3x3 peak" in markdown
    assert json.loads(result.to_json())["tables"]["steps"][0]["size"] == 32


@pytest.mark.slow
def test_optimize_variants_suite_runs_workers_side_by_side(tmp_path):
    # Two worker processes, each starting TensorFlow: about 15 s on 2 cores.
    result = bench_optimize.run_optimize_variants_suite(
        backbone="squeezenet1_1", size=32, variants=["inter-op-1"], warmup=1, repeats=1,
        max_workers=2, squeezenet_weights=None, log_dir=str(tmp_path), peak_shapes=((8, 8, 4, 4),))
    rows = result.tables["variants"].rows
    assert [(r["group"], r["variant"]) for r in rows] == [(1, "baseline"), (1, "inter-op-1")]
    for row in rows:
        assert row["median_s"] == pytest.approx(row["all_s"][0])
        assert row["vs_baseline"] == pytest.approx(row["median_s"] / rows[0]["median_s"])
    assert [r["layer"] for r in result.tables["gram"].rows][-1] == "total"
    assert "| 1 | inter-op-1 |" in result.to_markdown()


def test_optimize_variants_suite_rejects_unknown_names():
    with pytest.raises(ValueError, match="Received: variants=\\['warp-speed'\\]"):
        bench_optimize.run_optimize_variants_suite(variants=["warp-speed"])


# ---------------------------------------------------------------- script


SUITES = ["optimize", "optimize-variants", "time-to-quality", "precision", "memory", "fast-inference",
          "fast-memory", "fast-training", "fast-quality", "serving"]


def test_script_help_lists_every_suite_without_tensorflow():
    script = str(ROOT / "scripts" / "benchmark.py")
    code = (f"import runpy, sys\nsys.argv = [{script!r}, '--help']\n"
            f"try:\n    runpy.run_path({script!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    print('exit', e.code)\n"
            "print('tensorflow' in sys.modules)\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert completed.stdout.splitlines()[-2:] == ["exit 0", "False"], completed.stderr
    for suite in SUITES:
        assert f"    {suite}" in completed.stdout, suite


def test_script_removed_pause_flag_and_bad_suite_are_one_line_errors():
    for args, message in ((["optimize", "--pause-training"], "--pause-training was removed"),
                          (["optimze"], "invalid choice: 'optimze'")):
        completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), *args],
                                   capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert completed.returncode == 2 and completed.stderr.count("\n") == 1, completed.stderr
        assert message in completed.stderr
