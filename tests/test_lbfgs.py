"""nst_tf.lbfgs (projected L-BFGS in one graph) and the precision schedule of coarse-to-fine runs."""

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf
from PIL import Image

from nst_tf import cli, lbfgs, optimize
from nst_tf.config import StyleConfig
from nst_tf.errors import ConfigError, OptimizationError

from helpers import CTRL_CONTENT as CONTENT, CTRL_STYLE as STYLE, CTRL_TINY as TINY, mask_and_scales_args


def _quadratic(n=40, seed=0):
    """f(x) = 1/2 sum_i h_i (x_i - c_i)^2 with an ill-conditioned diagonal h and centres partly outside [0, 255]."""
    rng = np.random.default_rng(seed)
    h = tf.constant(np.geomspace(1e-2, 1.0, n).astype("float32"))
    c = tf.constant(rng.uniform(-100, 355, n).astype("float32"))

    @tf.function
    def value_and_gradient(x):
        return {"total": 0.5 * tf.reduce_sum(h * (x - c) ** 2)}, h * (x - c)

    return value_and_gradient, np.clip(c.numpy(), 0, 255)


def test_projected_lbfgs_reaches_the_box_constrained_minimum_like_scipy():
    value_and_gradient, solution = _quadratic()
    solver = lbfgs.ProjectedLBFGS(value_and_gradient, np.full(40, 128.0, np.float32), memory=5)
    for _ in range(60):
        values, finite = solver.step()
        assert bool(finite)
        assert solver.x.numpy().min() >= 0 and solver.x.numpy().max() <= 255  # Always inside the box.
    np.testing.assert_allclose(solver.x.numpy(), solution, atol=0.5)

    def fun(x):
        values, gradient = value_and_gradient(tf.constant(x, tf.float32))
        return float(values["total"]), gradient.numpy().astype(np.float64)

    reference = scipy.optimize.minimize(fun, np.full(40, 128.0), jac=True, method="L-BFGS-B",
                                        bounds=scipy.optimize.Bounds(0, 255), options={"maxcor": 5, "maxiter": 60})
    assert float(values["total"]) <= reference.fun + 1e-3 * abs(reference.fun) + 1e-3


def test_pixels_pushed_outside_stay_on_the_bound():
    @tf.function
    def value_and_gradient(x):  # Decreases without limit as pixels grow: the box must stop them at 255.
        return {"total": -tf.reduce_sum(x)}, -tf.ones_like(x)

    solver = lbfgs.ProjectedLBFGS(value_and_gradient, np.full((1, 4, 4, 3), 250.0, np.float32), memory=3)
    for _ in range(8):  # No curvature (s.y = 0): steps of first_step = 1 px, then held at the bound.
        values, _ = solver.step()
    np.testing.assert_array_equal(solver.x.numpy(), 255.0)
    assert float(values["total"]) == -255.0 * 48


def test_reset_to_another_size_reuses_the_compiled_iteration():
    target = tf.Variable(tf.zeros((1, 4, 6, 3)), shape=tf.TensorShape([None] * 4))

    @tf.function
    def value_and_gradient(x):
        return {"total": tf.reduce_sum((x - target) ** 2)}, 2 * (x - target)

    solver = lbfgs.ProjectedLBFGS(value_and_gradient, np.full((1, 4, 6, 3), 9.0, np.float32), memory=4)
    for _ in range(3):
        solver.step()
    target.assign(tf.fill((1, 8, 12, 3), 5.0))
    solver.reset(np.zeros((1, 8, 12, 3), np.float32))
    assert solver.x.shape.rank == 4 and solver.x.numpy().shape == (1, 8, 12, 3)
    for _ in range(20):
        values, _ = solver.step()
    np.testing.assert_allclose(solver.x.numpy(), 5.0, atol=1e-2)
    assert solver._step.experimental_get_tracing_count() == 1  # One graph for both sizes.
    assert int(solver.evaluations) >= 23


def test_bad_solver_settings():
    with pytest.raises(ValueError, match="memory must be >= 1.*Received: memory=0"):
        lbfgs.ProjectedLBFGS(lambda x: ({"total": tf.reduce_sum(x)}, tf.ones_like(x)), np.zeros(3), memory=0)


@pytest.mark.slow
def test_tf_solver_lowers_the_objective_per_iteration_as_well_as_scipy():
    runs = {solver: optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=15, optimizer="lbfgs", lbfgs_memory=5,
                                                                   lbfgs_solver=solver, **TINY), progress=False)
            for solver in ("scipy", "tf")}
    adam = optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=15, **TINY), progress=False)
    start = runs["scipy"].history[0]["total"]
    assert runs["tf"].iterations == 15
    totals = [h["total"] for h in runs["tf"].history]
    assert all(b <= a for a, b in zip(totals, totals[1:]))  # Sufficient decrease: never uphill.
    assert totals[-1] < adam.history[-1]["total"] < start
    assert totals[-1] <= 1.1 * runs["scipy"].history[-1]["total"]
    assert runs["tf"].image.min() >= 0 and runs["tf"].image.max() <= 255


def test_tf_solver_non_finite_values_stop_with_clear_error():
    config = StyleConfig(iterations=5, optimizer="lbfgs", lbfgs_solver="tf",
                         **dict(TINY, content_weight=1e38, style_weight=1e38))
    with pytest.raises(OptimizationError, match="non-finite.*optimizer=lbfgs") as error:
        optimize.stylize(CONTENT, [STYLE], config, progress=False)
    np.testing.assert_allclose(error.value.image, CONTENT)  # Nothing finite after the start image.


@pytest.mark.slow
def test_tf_solver_coarse_to_fine_traces_once_and_starts_each_scale_from_the_previous(monkeypatch):
    solvers = []
    original = lbfgs.ProjectedLBFGS

    def spy(*args, **kwargs):
        solvers.append(original(*args, **kwargs))
        return solvers[-1]

    monkeypatch.setattr(lbfgs, "ProjectedLBFGS", spy)
    seen = []
    config = StyleConfig(scales=(16, 24, 32), scale_iterations=(4, 3, 2), optimizer="lbfgs", lbfgs_solver="tf",
                         **TINY)
    result = optimize.stylize(CONTENT, [STYLE], config, progress=False,
                              callbacks=[lambda i, image, losses: seen.append(tuple(image.shape))])
    assert result.image.shape == CONTENT.shape
    assert [h["scale"] for h in result.history] == [16] * 4 + [24] * 3 + [32] * 2
    assert seen == [(1, 12, 16, 3)] * 4 + [(1, 18, 24, 3)] * 3 + [(1, 24, 32, 3)] * 2
    assert len(solvers) == 1 and solvers[0]._step.experimental_get_tracing_count() == 1
    # Each scale's first loss is far below the content start's: it began from the previous result.
    fresh = optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=1, optimizer="lbfgs", lbfgs_solver="tf",
                                                           **TINY), progress=False)
    assert result.history[7]["total"] < fresh.history[0]["total"]


@pytest.mark.slow
def test_precision_schedule_runs_bfloat16_at_coarse_scales_and_float32_at_the_last(monkeypatch):
    used = []
    original = optimize.build_objective

    def spy(content, styles, config, extractor=None, region_mask=None):
        used.append((content.shape[2], extractor.dtype_policy.name))
        return original(content, styles, config, extractor, region_mask)

    monkeypatch.setattr(optimize, "build_objective", spy)
    config = StyleConfig(scales=(16, 24, 32), iterations=2, optimizer="lbfgs", lbfgs_solver="tf",
                         scale_precisions=("bfloat16", "bfloat16", "float32"), **TINY)
    result = optimize.stylize(CONTENT, [STYLE], config, progress=False)
    assert used == [(16, "mixed_bfloat16"), (24, "mixed_bfloat16"), (32, "float32")]
    assert result.image.dtype == np.float32 and np.isfinite(result.image).all()
    assert config.precision_plan() == ["bfloat16", "bfloat16", "float32"]
    assert StyleConfig(scales=(16, 32), precision="bfloat16").precision_plan() == ["bfloat16", "bfloat16"]


def test_only_the_scheduled_precisions_build_a_feature_network(monkeypatch):
    built = []
    original = optimize.make_extractor
    monkeypatch.setattr(optimize, "make_extractor", lambda config: built.append(config.precision) or original(config))
    config = StyleConfig(scales=(16, 32), iterations=1, scale_precisions=("bfloat16", "bfloat16"), **TINY)
    optimize.stylize(CONTENT, [STYLE], config, progress=False)
    assert config.precision == "float32" and built == ["bfloat16"]


@pytest.mark.parametrize("fields, message", [
    (dict(scale_precisions=("bfloat16",)), "--scale-precisions needs --scales"),
    (dict(scales=(16, 32), scale_precisions=("bfloat16",)), r"scale-precisions must be one of .* per scale \(2\)"),
    (dict(scales=(16, 32), scale_precisions=("bfloat16", "float64")), "Received: scale_precisions=.*float64"),
    (dict(lbfgs_solver="torch"), "--lbfgs-solver must be one of scipy, tf. Received: lbfgs_solver='torch'"),
])
def test_config_rejects_bad_solver_and_schedule(fields, message):
    with pytest.raises(ConfigError, match=message):
        StyleConfig(**fields)


@pytest.mark.slow
def test_cli_tf_solver_with_schedule_mask_and_scales(tmp_path, capsys):
    args, out, _ = mask_and_scales_args(tmp_path)
    args = args[:-1] + ["--lbfgs-solver", "tf", "--scale-precisions", "bfloat16,float32", "--no-progress"]
    assert cli.stylize_main(args) == 0, capsys.readouterr().err
    assert Image.open(out).size == (32, 24)
    out.unlink()
    bad = args[:]
    bad[bad.index("bfloat16,float32")] = "bfloat16"
    assert cli.stylize_main(bad) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "scale-precisions must be one of float32, bfloat16, float16 per scale (2)" in lines[0]
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_:
        cli.stylize_main(args[:-5] + ["--lbfgs-solver", "torch", "--no-progress"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
