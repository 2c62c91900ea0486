import numpy as np
import pytest

from helpers import CTRL_CONTENT, CTRL_STYLE, CTRL_STYLE_B, CTRL_TINY
from nst_tf import color, optimize
from nst_tf.config import StyleConfig
from nst_tf.errors import ConfigError, OptimizationError

RNG = np.random.default_rng(0)
_Y, _X = np.mgrid[0:24, 0:32]
CONTENT = np.stack([_X * 8.0, _Y * 10.0, np.full_like(_X, 90.0)], -1)[None].astype("float32")  # Smooth "photo".
STYLE = RNG.uniform(0, 255, (1, 28, 28, 3)).astype("float32")
TINY = dict(backbone="vgg16", weights=None, content_layers=("block2_conv1",),
            style_layers=("block1_conv1", "block2_conv1"), style_weight=1.0, tv_weight=1e-2, image_size=32)


def test_short_optimization_lowers_total_loss():
    result = optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=25, **TINY), progress=False)
    totals = [h["total"] for h in result.history]
    assert result.iterations == 25 and len(totals) == 25
    assert totals[-1] < 0.5 * totals[0]
    assert result.history[-1]["style"] < 0.5 * result.history[0]["style"]
    assert result.image.shape == CONTENT.shape and result.image.dtype == np.float32
    assert result.image.min() >= 0 and result.image.max() <= 255


def test_seed_makes_runs_repeat_exactly():
    config = StyleConfig(iterations=5, init="noise", seed=3, **TINY)
    a = optimize.stylize(CONTENT, [STYLE], config, progress=False)
    b = optimize.stylize(CONTENT, [STYLE], config, progress=False)
    np.testing.assert_array_equal(a.image, b.image)


@pytest.mark.parametrize("init", ["content", "noise", "style"])
def test_init_modes(init):
    start = optimize.initial_image(CONTENT, [STYLE], init, seed=0)
    assert start.shape == CONTENT.shape
    if init == "content":
        np.testing.assert_array_equal(start, CONTENT)
    elif init == "noise":
        assert 100 < start.mean() < 155 and start.std() > 60  # Uniform white noise in [0, 255].
    else:
        assert abs(start.mean() - STYLE.mean()) < 5


def test_init_from_image_path(photo):
    start = optimize.initial_image(CONTENT, [STYLE], str(photo))
    assert start.shape == CONTENT.shape


def test_blended_styles_target_is_weighted_gram_average():
    config = StyleConfig(style_blend_weights=(3.0, 1.0), **TINY)
    objective, extractor = optimize.build_objective(CONTENT, [STYLE, CONTENT], config)
    single_a, _ = optimize.build_objective(CONTENT, [STYLE], StyleConfig(**TINY), extractor)
    single_b, _ = optimize.build_objective(CONTENT, [CONTENT], StyleConfig(**TINY), extractor)
    for name in objective.style_grams:
        expected = 0.75 * single_a.style_grams[name] + 0.25 * single_b.style_grams[name]
        np.testing.assert_allclose(objective.style_grams[name].numpy(), expected.numpy(), rtol=1e-5)


def test_blend_weight_count_must_match():
    with pytest.raises(ConfigError, match="one weight per style image"):
        optimize.build_objective(CONTENT, [STYLE], StyleConfig(style_blend_weights=(1.0, 2.0), **TINY))


def test_callbacks_see_every_iteration_and_interrupt_keeps_latest_image():
    seen = []

    def callback(iteration, image, losses):
        seen.append((iteration, losses["total"]))
        if iteration == 4:
            raise KeyboardInterrupt

    result = optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=50, **TINY), [callback], progress=False)
    assert result.interrupted and result.iterations == 4
    assert [i for i, _ in seen] == [1, 2, 3, 4]
    assert not np.array_equal(result.image, CONTENT)  # The work done so far is kept.


def test_non_finite_loss_stops_with_last_finite_image():
    config = StyleConfig(iterations=10, **dict(TINY, content_weight=1e38, style_weight=1e38))
    with pytest.raises(OptimizationError, match="non-finite at iteration 1") as caught:
        optimize.stylize(CONTENT, [STYLE], config, progress=False)
    np.testing.assert_array_equal(caught.value.image, CONTENT)


def test_step_skips_the_update_on_a_non_finite_gradient():
    import keras
    import tensorflow as tf

    image = tf.Variable(np.array([[[[0.0, 4.0, 9.0]]]], np.float32))  # d sqrt(x)/dx is inf at 0.
    step = optimize.make_step(lambda x: {"total": tf.reduce_sum(tf.sqrt(x))}, image, keras.optimizers.Adam(1.0))
    values = step()
    assert float(values["total"]) == 5.0 and not bool(values["updated"])
    np.testing.assert_array_equal(image.numpy(), [[[[0.0, 4.0, 9.0]]]])  # Still the last finite image.
    image.assign([[[[1.0, 4.0, 9.0]]]])
    assert bool(step()["updated"])
    np.testing.assert_array_equal(step.previous.numpy(), [[[[1.0, 4.0, 9.0]]]])
    assert np.all(image.numpy() < [[[[1.0, 4.0, 9.0]]]])  # Adam moved every pixel down the gradient.


def test_non_finite_gradient_stops_with_a_clear_error(monkeypatch):
    import tensorflow as tf

    build = optimize.build_objective

    @tf.custom_gradient
    def poisoned(image):  # The identity, with a NaN gradient.
        return tf.identity(image), lambda upstream: upstream * np.nan

    def objective_with_bad_gradient(*args, **kwargs):
        objective, extractor = build(*args, **kwargs)
        return (lambda image: objective(poisoned(image))), extractor

    monkeypatch.setattr(optimize, "build_objective", objective_with_bad_gradient)
    with pytest.raises(OptimizationError, match="gradient became non-finite at iteration 1") as caught:
        optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=5, **TINY), progress=False)
    np.testing.assert_array_equal(caught.value.image, CONTENT)


def test_original_colors_keep_content_chroma():
    config = StyleConfig(iterations=5, original_colors=True, **TINY)
    content = np.full((1, 24, 32, 3), (120.0, 100.0, 90.0), np.float32)  # In gamut after the swap.
    result = optimize.stylize(content, [STYLE], config, progress=False)
    np.testing.assert_allclose(color.rgb_to_yiq(result.image)[..., 1:], color.rgb_to_yiq(content)[..., 1:],
                               atol=0.05)


@pytest.mark.parametrize("field,value,message", [
    ("iterations", 0, "iterations must be at least 1"),
    ("content_weight", -1.0, "content-weight must be a finite number >= 0"),
    ("style_weight", float("nan"), "style-weight must be a finite"),
    ("tv_weight", float("inf"), "tv-weight must be a finite"),
    ("learning_rate", 0.0, "learning-rate"),
    ("style_layer_weights", (1.0,), "one weight per style layer"),
    ("style_blend_weights", (-1.0,), "style-blend-weights"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ConfigError, match=message):
        StyleConfig(**dict(TINY, **{field: value}))


def test_image_too_small_for_the_layers_is_a_clear_error():
    from nst_tf.errors import ImageError

    config = StyleConfig(**dict(TINY, style_layers=("block5_conv1",)))
    with pytest.raises(ImageError, match="style image is too small.*at least 16 px"):
        optimize.build_objective(CONTENT, [STYLE[:, :8, :8]], config)


# --- controls: L-BFGS, coarse-to-fine, colour, spatial guidance, precision ---


def test_lbfgs_lowers_objective_faster_per_iteration_than_adam():
    adam = optimize.stylize(CTRL_CONTENT, [CTRL_STYLE], StyleConfig(iterations=15, **CTRL_TINY), progress=False)
    lbfgs = optimize.stylize(CTRL_CONTENT, [CTRL_STYLE], StyleConfig(iterations=15, optimizer="lbfgs", **CTRL_TINY),
                             progress=False)
    assert lbfgs.iterations == 15
    assert lbfgs.history[-1]["total"] < adam.history[-1]["total"]
    assert lbfgs.image.min() >= 0 and lbfgs.image.max() <= 255  # Box bounds.


def test_lbfgs_non_finite_values_stop_with_clear_error():
    config = StyleConfig(iterations=5, optimizer="lbfgs", **dict(CTRL_TINY, content_weight=1e38, style_weight=1e38))
    with pytest.raises(OptimizationError, match="non-finite.*optimizer=lbfgs"):
        optimize.stylize(CTRL_CONTENT, [CTRL_STYLE], config, progress=False)


def test_coarse_to_fine_reaches_final_size_and_starts_each_scale_from_previous(monkeypatch):
    starts = []
    original = optimize.initial_image

    def spy(content, styles, init, seed=None):
        start = original(content, styles, init, seed)
        starts.append((init if isinstance(init, str) else np.array(init), start))
        return start

    monkeypatch.setattr(optimize, "initial_image", spy)
    config = StyleConfig(scales=(16, 32), scale_iterations=(4, 2), **CTRL_TINY)
    result = optimize.stylize(CTRL_CONTENT, [CTRL_STYLE], config, progress=False)
    assert result.image.shape == CTRL_CONTENT.shape  # 32 px longest side.
    assert [h["scale"] for h in result.history] == [16] * 4 + [32] * 2
    assert starts[0][0] == "content" and starts[0][1].shape == (1, 12, 16, 3)
    previous = starts[1][0]
    assert previous.shape == (1, 12, 16, 3)  # The second scale starts from the first's result...
    assert not np.allclose(previous, starts[0][1])  # ... which the optimization had changed,
    np.testing.assert_allclose(starts[1][1].mean(), previous.mean(), atol=3)  # upsampled to 24x32.
    assert starts[1][1].shape == CTRL_CONTENT.shape


def test_luminance_only_transfer_keeps_content_chroma_exactly():
    config = StyleConfig(iterations=5, original_colors=True, **CTRL_TINY)
    result = optimize.stylize(CTRL_CONTENT, [CTRL_STYLE], config, progress=False)
    in_gamut = (result.image > 0.5).all(-1) & (result.image < 254.5).all(-1)
    assert in_gamut.mean() > 0.9
    out_iq, content_iq = color.rgb_to_yiq(result.image)[..., 1:], color.rgb_to_yiq(CTRL_CONTENT)[..., 1:]
    np.testing.assert_allclose(out_iq[in_gamut], content_iq[in_gamut], atol=1e-3)
    assert not np.allclose(color.rgb_to_yiq(result.image)[..., 0], color.rgb_to_yiq(CTRL_CONTENT)[..., 0])


def test_luminance_only_optimizes_grey_images_with_matched_luminance():
    content, styles = optimize._colour_inputs(CTRL_CONTENT, [CTRL_STYLE], StyleConfig(original_colors=True, **CTRL_TINY))
    assert np.allclose(content[..., 0], content[..., 1]) and np.allclose(styles[0][..., 0], styles[0][..., 2])
    assert styles[0].mean() == pytest.approx(content.mean(), abs=1.0)  # Gatys 2017 eq. 9.


def test_guided_grams_use_only_each_region():
    config = StyleConfig(iterations=1, **CTRL_TINY)
    mask = np.zeros((1, 24, 32, 2), np.float32)
    mask[:, :, :16, 0] = 1.0
    mask[:, :, 16:, 1] = 1.0
    objective, _ = optimize.build_objective(CTRL_CONTENT, [CTRL_STYLE, CTRL_STYLE_B], config, region_mask=mask)
    image = CTRL_CONTENT.copy()
    base = float(objective(image)["style"])
    changed = image.copy()
    changed[:, :, 16:] = CTRL_STYLE_B[:, :24, :16]  # Right region painted with its own style: its loss drops.
    assert float(objective(changed)["style"]) < base
    wrong = image.copy()
    wrong[:, :, :16] = CTRL_STYLE_B[:, :24, :16]  # Left region painted with the *other* style: no better.
    assert float(objective(wrong)["style"]) > float(objective(changed)["style"])


def test_bfloat16_follows_float32_loss_trajectory():
    runs = {p: optimize.stylize(CTRL_CONTENT, [CTRL_STYLE], StyleConfig(iterations=10, precision=p, **CTRL_TINY), progress=False)
            for p in ("float32", "bfloat16")}
    f32 = np.array([h["total"] for h in runs["float32"].history])
    bf16 = np.array([h["total"] for h in runs["bfloat16"].history])
    # Stated tolerance: every step within 10% of float32 (bfloat16 keeps 8 bits of mantissa).
    np.testing.assert_allclose(bf16, f32, rtol=0.10)
    assert bf16[-1] < bf16[0]
