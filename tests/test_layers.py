"""Tests of nst_tf.layers: shapes, values, statistics, serialization, mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf.errors import ConfigError
from nst_tf.layers import ConvBlock, InstanceNormalization, ReflectionPadding2D, ResidualBlock, UpsampleConv2D


def _images(shape=(2, 9, 7, 4), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_reflection_padding_matches_numpy():
    x = _images((1, 5, 6, 2))
    y = ReflectionPadding2D((2, 3))(x)
    np.testing.assert_array_equal(y, np.pad(x, [(0, 0), (2, 2), (3, 3), (0, 0)], mode="reflect"))
    assert ReflectionPadding2D(1).compute_output_shape((None, None, 4, 3)) == (None, None, 6, 3)


@pytest.mark.parametrize("padding", [-1, (1, 2, 3), 1.5, "a"])
def test_reflection_padding_rejects_bad_padding(padding):
    with pytest.raises(ConfigError, match="Received: padding="):
        ReflectionPadding2D(padding)


def test_instance_norm_equals_group_norm_with_one_channel_per_group():
    x = _images() * 3 + 5
    ours = InstanceNormalization()
    ours.build(x.shape)
    ours.set_weights([np.linspace(0.5, 2, 4).astype("float32"), np.arange(4, dtype="float32")])
    reference = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)
    reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), reference(x), atol=1e-4)
    per_image = ours(x)[0, ..., 0]
    np.testing.assert_allclose([np.mean(per_image), np.std(per_image)], [0.0, 0.5], atol=1e-3)


def test_instance_norm_uses_given_statistics():
    x, other = _images(seed=1), _images(seed=2) * 4 + 1
    norm = InstanceNormalization(center=False, scale=False)
    own, stats = norm(x, return_statistics=True)
    np.testing.assert_allclose(norm(x, statistics=stats), own, atol=1e-6)
    _, other_stats = norm(other, return_statistics=True)
    borrowed = norm(x, statistics=other_stats)
    mean, variance = other_stats
    np.testing.assert_allclose(borrowed, (x - mean) / np.sqrt(variance + 1e-5), atol=1e-5)
    assert not np.allclose(borrowed, own)


@pytest.mark.parametrize("layer, in_shape, out_shape", [
    (ConvBlock(5, 3), (2, 9, 7, 4), (2, 9, 7, 5)),
    (ConvBlock(5, 3, strides=2), (2, 9, 7, 4), (2, 5, 4, 5)),
    (ConvBlock(3, 9, normalize=False, activation=None), (1, 12, 10, 4), (1, 12, 10, 3)),
    (ResidualBlock(4), (2, 9, 7, 4), (2, 9, 7, 4)),
    (UpsampleConv2D(6), (2, 9, 7, 4), (2, 18, 14, 6)),
])
def test_shapes(layer, in_shape, out_shape):
    y = layer(_images(in_shape))
    assert tuple(y.shape) == out_shape
    assert layer.compute_output_shape(in_shape) == out_shape


def test_statistics_round_trip_through_composite_layers():
    x = _images(seed=3)
    for layer in (ConvBlock(4, 3), ResidualBlock(4), UpsampleConv2D(4)):
        plain = layer(x)
        with_stats, stats = layer(x, return_statistics=True)
        np.testing.assert_allclose(with_stats, plain, atol=1e-6)
        np.testing.assert_allclose(layer(x, statistics=stats), plain, atol=1e-5)


_LAYERS = [
    (ReflectionPadding2D, {"padding": (1, 2)}),
    (InstanceNormalization, {"epsilon": 1e-3, "center": False, "scale": True}),
    (ConvBlock, {"filters": 3, "kernel_size": 5, "strides": 2, "normalize": False, "activation": "tanh"}),
    (ResidualBlock, {"filters": 4, "kernel_size": 5}),
    (UpsampleConv2D, {"filters": 2, "kernel_size": 3, "size": 3, "normalize": True, "activation": None}),
]


@pytest.mark.parametrize("cls, kwargs", _LAYERS)
def test_get_config_round_trip(cls, kwargs):
    layer = cls(**kwargs, name="layer")
    x = _images(seed=4)
    expected = layer(x)
    config = layer.get_config()
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x), expected, atol=1e-6)


def test_keras_file_round_trip_with_safe_mode(tmp_path):
    inputs = keras.Input((None, None, 4))
    x = ConvBlock(8, 3, strides=2)(inputs)
    x = ResidualBlock(8)(x)
    x = UpsampleConv2D(4)(x)
    x = ReflectionPadding2D(1)(x)
    x = InstanceNormalization()(x)
    model = keras.Model(inputs, x)
    data = _images((2, 10, 12, 4), seed=5)
    model.save(tmp_path / "layers.keras")
    loaded = keras.models.load_model(tmp_path / "layers.keras")  # safe_mode stays on.
    np.testing.assert_allclose(loaded(data), model(data), atol=1e-6)


def test_mixed_bfloat16_keeps_float32_weights_and_statistics():
    block = ResidualBlock(4, dtype="mixed_bfloat16")
    y, stats = block(_images(), return_statistics=True)
    assert y.dtype == tf.bfloat16
    assert all(w.dtype == "float32" for w in block.weights)
    assert stats[0][0][0].dtype == tf.float32


# ---------------------------------------------------------------- conditional instance normalization


def _conditional(num_styles=3, channels=4, seed=0):
    from nst_tf.layers import ConditionalInstanceNormalization

    layer = ConditionalInstanceNormalization(num_styles)
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(seed)
    layer.gamma.assign(rng.uniform(0.5, 1.5, (num_styles, channels)).astype("float32"))
    layer.beta.assign(rng.normal(0, 1, (num_styles, channels)).astype("float32"))
    return layer


def test_conditional_norm_selecting_style_k_equals_instance_norm_with_row_k():
    layer, x = _conditional(), _images()
    for k in range(3):
        plain = InstanceNormalization()
        plain.build(x.shape)
        plain.gamma.assign(layer.gamma[k])
        plain.beta.assign(layer.beta[k])
        one_hot = np.eye(3, dtype="float32")[[k, k]]
        np.testing.assert_allclose(layer(x, style_weights=one_hot), plain(x), atol=1e-5)


def test_conditional_norm_blends_gamma_and_beta_per_example():
    layer, x = _conditional(), _images()
    weights = np.array([[0.2, 0.8, 0.0], [0.0, 0.5, 0.5]], "float32")
    singles = [np.asarray(layer(x, style_weights=np.eye(3, dtype="float32")[[k, k]])) for k in range(3)]
    # Affine in (gamma, beta), so a convex blend of the rows is the same blend of the outputs.
    expected = np.stack([sum(weights[b, k] * singles[k][b] for k in range(3)) for b in range(2)])
    np.testing.assert_allclose(layer(x, style_weights=weights), expected, atol=1e-5)
    gamma, beta = layer.blended(weights)
    np.testing.assert_allclose(gamma, weights @ layer.gamma.numpy(), rtol=1e-6)


def test_conditional_norm_config_round_trip_and_errors():
    from nst_tf.layers import ConditionalInstanceNormalization

    layer = _conditional(num_styles=2)
    clone = ConditionalInstanceNormalization.from_config(layer.get_config())
    assert clone.num_styles == 2 and clone.epsilon == layer.epsilon
    with pytest.raises(ConfigError, match="needs `style_weights`"):
        layer(_images())
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ConfigError, match="num_styles"):
            ConditionalInstanceNormalization(bad)
    block = ConvBlock(4, 3, num_styles=2)
    assert type(block.norm).__name__ == "ConditionalInstanceNormalization"
    assert ConvBlock.from_config(block.get_config()).num_styles == 2
