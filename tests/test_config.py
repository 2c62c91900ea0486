"""nst_tf.config: StyleConfig validation, presets restated from their sources, training defaults."""

import numpy as np
import pytest

from nst_tf import backbones
from nst_tf.config import PRESETS, STRATEGIES, TRAIN_LAYERS, TRAIN_LOSS_WEIGHTS, StyleConfig, check_int
from nst_tf.errors import ConfigError


def test_defaults_resolve_to_the_backbone_defaults():
    config = StyleConfig(backbone="squeezenet1_1")
    spec = backbones.get_spec("squeezenet1_1")
    assert config.resolved_layers() == (spec.content_layers, spec.style_layers)
    assert config.resolved_loss_weights() == (1.0, 5e-2, 1e-2)
    assert StyleConfig(backbone="vgg19", style_weight=2.0).resolved_loss_weights() == (1.0, 2.0, 7.0)


@pytest.mark.parametrize("field,value,message", [
    ("image_size", 0, "--image-size must be a positive number"),
    ("backbone", "alexnet", "Unknown backbone"),
    ("pooling", "min", "--pooling must be"),
    ("optimizer", "sgd", "--optimizer must be one of adam, lbfgs"),
    ("learning_rate", float("inf"), "--learning-rate must be a finite number > 0"),
    ("style_weight", -1.0, "--style-weight must be a finite number >= 0"),
    ("style_blend_weights", (0.0, 0.0), "positive sum"),
    ("adam_beta_1", 1.0, "--adam-beta-1 must be in"),
])
def test_bad_values_name_the_flag_and_the_value(field, value, message):
    with pytest.raises(ConfigError, match=message) as error:
        StyleConfig(**{field: value})
    assert "Received:" in str(error.value)


@pytest.mark.parametrize("value", [1, 7, 100, np.int64(50), np.uint8(1)])
def test_check_int_accepts_integers_in_range(value):
    assert check_int("quality", value, 1, 100) is value


@pytest.mark.parametrize("name,value,minimum,maximum,allow_none,message", [
    ("quality", 0, 1, 100, False, "`quality` must be an integer from 1 to 100. Received: quality=0"),
    ("quality", 101, 1, 100, False, "`quality` must be an integer from 1 to 100. Received: quality=101"),
    ("size", 2.0, 1, None, False, "`size` must be an integer >= 1. Received: size=2.0"),
    ("size", True, 1, None, False, "`size` must be an integer >= 1. Received: size=True"),
    ("size", "3", 1, None, False, "`size` must be an integer >= 1. Received: size='3'"),
    ("size", None, 1, None, False, "`size` must be an integer >= 1. Received: size=None"),
    ("max_size", 0, 1, None, True, "`max_size` must be an integer >= 1 or None. Received: max_size=0"),
    ("--batch-size", 0, 1, None, False, "--batch-size must be an integer >= 1. Received: batch_size=0"),
    ("--save-every", -1, 0, None, False, "--save-every must be an integer >= 0. Received: save_every=-1"),
])
def test_check_int_refuses_in_one_line(name, value, minimum, maximum, allow_none, message):
    with pytest.raises(ConfigError) as error:
        check_int(name, value, minimum, maximum, allow_none=allow_none)
    assert str(error.value) == message


def test_check_int_takes_none_only_when_allowed():
    assert check_int("max_size", None, 1, allow_none=True) is None


def test_style_layer_weights_need_one_weight_per_layer():
    with pytest.raises(ConfigError, match="one weight per style layer \\(5"):
        StyleConfig(style_layer_weights=(1.0, 2.0))


def test_blend_weights_are_normalized_and_counted():
    assert StyleConfig(style_blend_weights=(3.0, 1.0)).blend_weights(2) == [0.75, 0.25]
    assert StyleConfig().blend_weights(4) == [0.25] * 4
    with pytest.raises(ConfigError, match="one weight per style image \\(3\\)"):
        StyleConfig(style_blend_weights=(1.0, 1.0)).blend_weights(3)


def test_scale_and_precision_plans():
    config = StyleConfig(scales=(64, 128), scale_iterations=(5, 2), scale_precisions=("bfloat16", "float32"))
    assert config.output_size == 128
    assert config.scale_plan() == [(64, 5), (128, 2)]
    assert config.precision_plan() == ["bfloat16", "float32"]
    assert StyleConfig(image_size=300, iterations=7).scale_plan() == [(300, 7)]


def test_training_defaults_name_real_layers_of_each_loss_network():
    assert set(TRAIN_LAYERS) == set(TRAIN_LOSS_WEIGHTS) == set(backbones.BACKBONES)
    for name, (content, style) in TRAIN_LAYERS.items():
        assert set(content + style) <= set(backbones.get_spec(name).feature_layers), name
    assert STRATEGIES == ("default", "mirrored", "multi-worker")


def test_coarse_to_fine_bad_scales():
    with pytest.raises(ConfigError, match="strictly increasing"):
        StyleConfig(scales=(512, 256))
    with pytest.raises(ConfigError, match="one iteration count >= 1 per scale"):
        StyleConfig(scales=(256, 512), scale_iterations=(10,))
    with pytest.raises(ConfigError, match="needs --scales"):
        StyleConfig(scale_iterations=(10,))


def test_presets_match_their_sources():
    gatys = StyleConfig.from_preset("gatys2016")
    assert (gatys.pooling, gatys.optimizer, gatys.init, gatys.tv_weight) == ("avg", "lbfgs", "noise", 0.0)
    assert gatys.content_layers == ("block4_conv2",) and len(gatys.style_layers) == 5
    # alpha / beta = 1e-3 with Gatys' 1/2-sum content loss at 512x512 (N = 512, M = 64 * 64).
    assert gatys.style_weight == pytest.approx(1e3 / (0.5 * 512 * 64 * 64))
    tf_tut = StyleConfig.from_preset("tf-tutorial")
    assert tf_tut.content_layers == ("block5_conv2",) and tf_tut.iterations == 1000
    assert (tf_tut.content_weight, tf_tut.style_weight / 4) == (1e4, 1e-2)
    assert tf_tut.learning_rate / 255 == pytest.approx(0.02) and tf_tut.adam_beta_1 == 0.99
    assert tf_tut.adam_epsilon * 255 == pytest.approx(0.1) and tf_tut.init == "content"
    assert tf_tut.image_size == 512 and tf_tut.optimizer == "adam"
    ns = StyleConfig.from_preset("neural-style")
    assert (ns.content_weight, ns.tv_weight, ns.optimizer, ns.iterations, ns.lbfgs_memory) == (5.0, 1e-3, "lbfgs",
                                                                                           1000, 100)
    # Per-layer weight in our units equals neural-style's 100 / C_l^2 (Gram / (C H W), MSE).
    weights = np.array(ns.style_layer_weights) / sum(ns.style_layer_weights)
    np.testing.assert_allclose(ns.style_weight * weights / 4, 100.0 / np.array([64, 128, 256, 512, 512]) ** 2)
    assert set(PRESETS) == {"gatys2016", "tf-tutorial", "neural-style"}


def test_unknown_preset():
    with pytest.raises(ConfigError, match="Unknown preset.*gatys2016"):
        StyleConfig.from_preset("picasso")


def test_transformer_sizes_follow_the_network_without_tensorflow():
    from nst_tf import config

    assert [config.aligned_size(s) for s in (1, 5, 8, 9, 12, 13)] == [8, 8, 8, 12, 12, 16]
    assert config.transformer_channels((32, 64, 128), 0.5) == (16, 32, 64)
    assert config.transformer_channels((32, 64, 128), 0.01) == (1, 1, 1)  # Never a zero-width layer.
