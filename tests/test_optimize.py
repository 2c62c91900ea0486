import numpy as np
import pytest

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
