"""Tests of nst_tf.transformer: shapes, architecture, serialization, multi-style networks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import SMALL, noise_images, random_transformer, single_style_with_blend  # noqa: I001
from nst_tf.errors import ConfigError
from nst_tf.transformer import MIN_INPUT_SIZE, TransformerNet

_image = noise_images


@pytest.mark.parametrize("size", [(MIN_INPUT_SIZE, MIN_INPUT_SIZE), (5, 7), (31, 17), (32, 48), (65, 33)])
def test_output_shape_equals_input_shape(net, size):
    out = net(_image(*size, batch=2))
    assert out.shape == (2, *size, 3) and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255


def test_logits_are_the_pre_activation_of_the_output(net):
    images = _image(31, 17, batch=2)
    out, logits, statistics = net(images, return_logits=True, return_statistics=True)
    assert logits.shape == out.shape and logits.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), 127.5 * (np.tanh(logits.numpy()) + 1.0), atol=1e-3)
    np.testing.assert_allclose(net(images, statistics=statistics).numpy(), out.numpy(), atol=1e-3)


def test_activations_are_the_block_outputs_in_order(net):
    images = _image(31, 17, batch=2)
    out, activations = net(images, return_activations=True)
    assert len(activations) == len(net.blocks)
    # 31 x 17 is padded to 32 x 20; two stride-2 convolutions, five residual blocks, two upsamplings.
    assert [tuple(a.shape) for a in activations] == [(2, 32, 20, 32), (2, 16, 10, 64)] + [(2, 8, 5, 128)] * 6 + [
        (2, 16, 10, 64), (2, 32, 20, 32)]
    np.testing.assert_allclose(out.numpy(), net(images).numpy(), atol=1e-4)
    # With logits too, the order is images, logits, activations, statistics.
    _, logits, again, statistics = net(images, return_logits=True, return_activations=True, return_statistics=True)
    assert logits.shape == out.shape and len(again) == len(activations) == len(statistics)


def test_architecture_matches_johnson():
    model = TransformerNet()
    model.build((None, None, None, 3))
    kernels = [w.shape for w in model.weights if w.path.endswith("kernel")]
    assert kernels[:3] == [(9, 9, 3, 32), (3, 3, 32, 64), (3, 3, 64, 128)]
    assert kernels[3:13] == [(3, 3, 128, 128)] * 10
    assert kernels[13:] == [(3, 3, 128, 64), (3, 3, 64, 32), (9, 9, 32, 3)]
    assert model.count_params() == 1_679_235


def test_conv_blocks_and_norm_layers_follow_the_order_of_application():
    model = TransformerNet(**SMALL)
    model.build((None, None, None, 3))
    structure = model.conv_blocks()
    assert [block for block, _ in structure] == model.blocks
    assert [len(convs) for _, convs in structure] == [1, 1, 1, 2, 1, 1]  # conv1-3, res1, up1-2.
    convs = [conv for _, convs in structure for conv in convs]
    assert [conv.norm for conv in convs] == [norm for _, norm in model.norm_layers()]
    assert [conv.conv.kernel.shape[-1] for conv in convs] == [8, 16, 16, 16, 16, 16, 8]


def test_get_config_round_trip():
    model = TransformerNet(**SMALL, name="small")
    x = _image(20, 13)
    expected = model(x)
    config = model.get_config()
    assert config["filters"] == [8, 16, 16] and config["num_residual_blocks"] == 1
    clone = TransformerNet.from_config(config)
    clone.build((None, None, None, 3))
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x), expected, atol=1e-5)


def test_keras_file_round_trip(net, tmp_path):
    path = tmp_path / "net.keras"
    net.save(path)
    x = _image(23, 30, seed=1)
    loaded = keras.models.load_model(path)  # safe_mode on: no Lambda layers, no code.
    assert isinstance(loaded, TransformerNet)
    np.testing.assert_allclose(loaded(x), net(x), atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="filters"):
        TransformerNet(filters=(8, 16))
    with pytest.raises(ConfigError, match="num_residual_blocks"):
        TransformerNet(num_residual_blocks=-1)


# ---------------------------------------------------------------- multi-style networks (Dumoulin et al. 2017)

STYLES = ["a", "b", "photo"]


def _multi(seed=0, names=STYLES, **kwargs):
    return random_transformer(seed, style_names=names, **{**SMALL, **kwargs})


def test_selecting_style_k_equals_a_single_style_network_with_its_gamma_and_beta():
    multi, x = _multi(), _image(20, 24)
    for k in range(len(STYLES)):
        single = single_style_with_blend(multi, np.eye(len(STYLES))[k])
        np.testing.assert_allclose(multi(x, style=[k]), single(x), atol=1e-3)


def test_style_indices_one_hot_and_blend_continuity():
    multi, x = _multi(), _image(16, 16, batch=2)
    by_index = np.asarray(multi(x, style=np.array([0, 1])))
    by_weights = np.asarray(multi(x, style=np.array([[1, 0, 0], [0, 1, 0]], "float32")))
    np.testing.assert_allclose(by_index, by_weights, atol=1e-4)
    base = np.array([0.5, 0.5, 0.0], "float32")
    steps = [np.abs(np.asarray(multi(x, style=base + [d, -d, 0])) - np.asarray(multi(x, style=base))).mean()
             for d in (0.1, 0.01, 0.001)]
    # Continuous: the output change shrinks with the weight change, about in proportion.
    assert steps[0] > steps[1] > steps[2] and steps[2] < 0.05 * steps[0]
    halfway = np.asarray(multi(x, style=base))
    pixel_mix = 0.5 * by_weights[:, None][:, 0] + 0.5 * np.asarray(multi(x, style=np.array([1, 0])))
    assert np.abs(halfway - pixel_mix).mean() > 0.1  # The blend is in gamma/beta, not in pixels.


def test_multi_style_keras_round_trip_keeps_styles_and_metadata(tmp_path):
    multi, x = _multi(), _image(12, 20)
    multi.metadata = {"training": {"steps": 3}, "styles": {"a": {"style_weight": 0.5}}}
    path = tmp_path / "multi.keras"
    multi.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.style_names == STYLES and loaded.metadata == multi.metadata
    assert loaded.channels == multi.channels
    np.testing.assert_array_equal(loaded(x, style=[2]), multi(x, style=[2]))


def test_width_multiplier_scales_channels_and_validates():
    half = TransformerNet(width_multiplier=0.5)
    assert half.channels == (16, 32, 64) and TransformerNet.from_config(half.get_config()).channels == (16, 32, 64)
    for bad in (0, -1, float("nan"), "2", True):
        with pytest.raises(ConfigError, match="width_multiplier"):
            TransformerNet(width_multiplier=bad)
    for names in ([], ["a", "a"], ["a:b"], [""]):
        with pytest.raises(ConfigError, match="style_names"):
            TransformerNet(style_names=names)


def test_style_weights_from_names_blends_and_strength():
    multi = _multi()
    np.testing.assert_array_equal(multi.style_weights("b"), [0, 1, 0])
    np.testing.assert_allclose(multi.style_weights({"a": 3, "b": 1}), [0.75, 0.25, 0])
    np.testing.assert_allclose(multi.style_weights(1, strength=0.25), [0, 0.25, 0.75])
    np.testing.assert_allclose(multi.style_weights("a", strength=0), [0, 0, 1])
    np.testing.assert_allclose(multi.style_weights("a", strength=1.5), [1.5, 0, -0.5])
    x = _image(16, 16)
    np.testing.assert_allclose(multi(x, style=multi.style_weights("a", 0.0)), multi(x, style=[2]), atol=1e-4)


@pytest.mark.parametrize("style, strength, message", [
    ("zebra", 1.0, "Unknown style name 'zebra'; this network has: a, b, photo"),
    ({"a": -1, "b": 2}, 1.0, "finite, >= 0 and not all zero"),
    ({"a": float("nan")}, 1.0, "finite, >= 0 and not all zero"),
    ([0, 0, 0], 1.0, "finite, >= 0 and not all zero"),
    ([1, 0], 1.0, "a name, an index"),
    (5, 1.0, r"Style index must be in \[0, 3\)"),
    ("a", 2.5, r"strength must be a number in \[0, 2.0\]"),
    ("a", float("inf"), "strength must be a number"),
])
def test_style_weights_bad_selection(style, strength, message):
    with pytest.raises(ConfigError, match=message):
        _multi().style_weights(style, strength)


def test_strength_and_selection_need_the_right_network(net):
    with pytest.raises(ConfigError, match="single style"):
        net.style_weights("a")
    with pytest.raises(ConfigError, match="no 'photo' style"):
        _multi(names=["a", "b"]).style_weights("a", strength=0.5)
    with pytest.raises(ConfigError, match="pass `style`"):
        _multi()(_image(8, 8))
    with pytest.raises(ConfigError, match="single style"):
        net(_image(8, 8), style=[0])


def test_added_style_copies_every_other_style_exactly():
    from nst_tf.transformer import with_added_style

    multi, x = _multi(), _image(16, 20)
    extended = with_added_style(multi, "c")
    assert extended.style_names == STYLES + ["c"]
    for k in range(3):
        np.testing.assert_array_equal(extended(x, style=[k]), multi(x, style=[k]))
    with pytest.raises(ConfigError, match="already has a style named 'a'"):
        with_added_style(multi, "a")
    with pytest.raises(ConfigError, match="multi-style network only"):
        with_added_style(TransformerNet(**SMALL), "c")


def test_with_dtype_policy_keeps_the_weights_and_the_network():
    from nst_tf.transformer import with_dtype_policy

    multi, x = _multi(), _image(16, 20)
    multi.metadata = {"style": "test"}
    assert with_dtype_policy(multi, "float32") is multi
    fast = with_dtype_policy(multi, "mixed_bfloat16")
    assert fast.dtype_policy.name == "mixed_bfloat16" and fast.compute_dtype == "bfloat16"
    assert fast.style_names == multi.style_names and fast.metadata == multi.metadata
    for ours, theirs in zip(fast.weights, multi.weights, strict=True):  # Mixed: float32 variables, copied exactly.
        assert ours.dtype == "float32"
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    difference = np.abs(fast(x, style=[1]) - multi(x, style=[1]))
    assert 0 < difference.mean() < 3  # bfloat16 keeps 8 bits of mantissa.
    back = with_dtype_policy(fast, keras.dtype_policies.get("float32"))
    assert back.dtype_policy.name == "float32"
    np.testing.assert_array_equal(back(x, style=[1]), multi(x, style=[1]))
    with pytest.raises(ValueError):
        with_dtype_policy(multi, "float13")
