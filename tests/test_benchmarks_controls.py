"""benchmarks.controls: the control suites end to end at tiny sizes (the numbers themselves: BENCHMARKS.md)."""

import pytest

from benchmarks import controls as benchmark_controls
from helpers import ASSETS
from nst_tf import memory
from nst_tf.config import StyleConfig


@pytest.fixture
def assets(squeezenet_weights, asset):
    asset("images/content/tubingen.jpg")
    asset("images/style/starry_night.jpg")
    return ASSETS


@pytest.mark.slow
def test_time_to_quality_reports_each_solver_against_the_adam_target(assets):
    result = benchmark_controls.time_to_quality(
        assets, "squeezenet1_1", size=64, baseline_iterations=20,
        candidates={"lbfgs": dict(optimizer="lbfgs")}, budget_factor=20.0)
    rows = result.tables["ttq"].rows
    assert [r["solver"] for r in rows] == ["adam (tf-tutorial preset)", "lbfgs"]
    target = rows[0]["objective"]
    assert rows[1]["reached"] and rows[1]["objective"] <= target * 1.0005  # L-BFGS gets there within budget.
    assert rows[1]["speedup"] == pytest.approx(rows[0]["seconds"] / rows[1]["seconds"])
    assert "| lbfgs |" in result.to_markdown()


@pytest.mark.slow
def test_time_to_quality_runs_the_graph_solver_with_a_precision_schedule(assets):
    result = benchmark_controls.time_to_quality(
        assets, "squeezenet1_1", size=64, baseline_iterations=20, budget_factor=20.0,
        candidates={"lbfgs tf, 56 -> 64 px": dict(optimizer="lbfgs", lbfgs_solver="tf", scales=(56, 64),
                                                 scale_iterations=(10, 40), scale_precisions=("bfloat16", "float32"))})
    baseline, tf_solver = result.tables["ttq"].rows
    assert tf_solver["reached"] and tf_solver["objective"] <= baseline["objective"] * 1.0005
    assert tf_solver["iterations"] > 10  # It got past the coarse scale: the target is judged at 64 px only.


def test_default_candidates_are_valid_configs_ending_in_float32():
    from nst_tf.config import StyleConfig

    for backbone in ("squeezenet1_1", "vgg19"):
        candidates = benchmark_controls.default_candidates(backbone, 512)
        assert any(c.get("lbfgs_solver") == "scipy" or "lbfgs_solver" not in c for c in candidates.values())
        for name, overrides in candidates.items():
            config = StyleConfig(**overrides)
            assert config.output_size == 512 and config.precision_plan()[-1] == "float32", name
            if config.scales:
                assert config.scales == (64, 128, 256, 512) and config.scale_iterations[-1] == 1000, name
    assert "bfloat16" in benchmark_controls.default_candidates("vgg19", 512)[
        "lbfgs tf (m=5), scales 64,128,256,512, 200 its per coarse scale, bfloat16 below 512 px"]["scale_precisions"]


@pytest.mark.slow
def test_precision_comparison_runs_both_precisions(assets):
    result = benchmark_controls.precision_comparison(assets, "squeezenet1_1", sizes=(64,), iterations=5,
                                                     loss_size=64, warmup=1, repeats=2)
    (step,) = result.tables["steps"].rows
    assert (step["backbone"], step["size"]) == ("squeezenet1_1", 64)
    assert step["speedup"] == pytest.approx(step["float32_s"] / step["bfloat16_s"])
    losses = {r["precision"]: r["final_loss"] for r in result.tables["loss"].rows}
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.1)


@pytest.mark.slow
def test_peak_memory_grows_with_size_and_reports_the_library_estimate():
    result = benchmark_controls.peak_memory(sizes=(32, 128), backbone="squeezenet1_1", extra=())
    small, large = result.tables["memory"].rows
    assert large["peak_gib"] >= small["peak_gib"] >= small["base_gib"]
    for row in (small, large):
        config = StyleConfig(backbone="squeezenet1_1", weights=None, image_size=row["size"])
        expected = memory.estimate_step_bytes(config, row["size"], row["size"], "float32") / 2**30
        assert row["estimate_gib"] == pytest.approx(expected, rel=1e-6)
