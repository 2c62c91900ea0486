"""nst_tf.augmentation: StyleAugmentation on a tiny three-style network (seconds on a CPU)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import random_transformer

from nst_tf.augmentation import StyleAugmentation
from nst_tf.errors import ConfigError, ImageError

SMALL = {"filters": (4, 8, 8), "num_residual_blocks": 1}
ATOL = 2e-3  # Inference graph vs Keras call: float rounding only (grey levels of 0..255).


@pytest.fixture(scope="module")
def network():
    return random_transformer(seed=3, style_names=["a", "b", "photo"], **SMALL)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 255, (4, 16, 20, 3)).astype("float32")


def test_training_false_and_rate_zero_are_identity(network, images):
    layer = StyleAugmentation(network, rate=1.0, seed=1)
    np.testing.assert_array_equal(layer(images, training=False), images)
    np.testing.assert_array_equal(StyleAugmentation(network, rate=0.0, seed=1)(images, training=True), images)
    # A training flag known only when the graph runs.
    switch = tf.function(lambda x, training: layer.call(x, training=training))
    np.testing.assert_array_equal(switch(images, tf.constant(False)), images)
    assert not np.allclose(switch(images, tf.constant(True)), images)


def test_rate_one_changes_every_image(network, images):
    out = StyleAugmentation(network, rate=1.0, strength=1.0, seed=1)(images, training=True).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    assert np.all(np.abs(out - images).mean(axis=(1, 2, 3)) > 1.0)
    assert 0.0 <= out.min() and out.max() <= 255.0


def test_the_output_is_the_network_for_the_drawn_weights(network, images):
    layer = StyleAugmentation(network, rate=0.5, strength=(0.2, 1.5), concentration=[0.5, 2.0], seed=1)
    seed = tf.constant([5, 9], tf.int64)
    draw = layer.draw(len(images), seed)
    out = layer.augment(images, seed).numpy()
    weights = draw["weights"].numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    strength = draw["strength"].numpy()
    assert np.all((0.2 <= strength) & (strength <= 1.5))
    np.testing.assert_allclose(weights[:, :2], strength[:, None] * draw["blend"].numpy(), atol=1e-6)
    # The weights are the network's own blend toward its photo style (TransformerNet.style_weights).
    blend = draw["blend"].numpy()[0]
    np.testing.assert_allclose(weights[0], network.style_weights({"a": blend[0], "b": blend[1]},
                                                                 strength=float(strength[0])), atol=1e-5)
    expected = network(images, style=weights).numpy()
    apply = draw["apply"].numpy()
    for index in range(len(images)):
        want = expected[index] if apply[index] else images[index]
        np.testing.assert_allclose(out[index], want, atol=ATOL, rtol=0)
    # A training call uses the generator's next seed: the same as augment with that seed.
    state = layer.seed_generator.state.numpy().copy()
    np.testing.assert_array_equal(layer(images, training=True), layer.augment(images, state))


def test_same_seed_same_outputs_and_draws_differ_per_call(network, images):
    first, second = (StyleAugmentation(network, rate=1.0, seed=7) for _ in range(2))
    a1, a2 = first(images), first(images)
    np.testing.assert_array_equal(a1, second(images))
    np.testing.assert_array_equal(a2, second(images))
    assert not np.allclose(a1, a2)


def test_value_range_and_unbatched_images(network, images):
    layer = StyleAugmentation(network, rate=1.0, seed=2, value_range=(0, 1))
    scaled = layer.augment(images / 255.0, 4).numpy()
    np.testing.assert_allclose(scaled * 255.0, StyleAugmentation(network, rate=1.0, seed=2).augment(images, 4),
                               atol=ATOL, rtol=0)
    assert scaled.min() >= 0 and scaled.max() <= 1
    single = layer.augment(images[0] / 255.0, 4)
    assert single.shape == images[0].shape


def test_a_network_without_photo_blends_pixels():
    network = random_transformer(seed=4, style_names=["a", "b"], **SMALL)
    layer = StyleAugmentation(network, rate=1.0, strength=0.25, seed=0)
    x = np.random.default_rng(1).uniform(0, 255, (2, 12, 12, 3)).astype("float32")
    draw = layer.draw(2, 3)
    full = network(x, style=draw["weights"]).numpy()
    np.testing.assert_allclose(layer.augment(x, 3), 0.25 * full + 0.75 * x, atol=ATOL, rtol=0)
    with pytest.raises(ConfigError, match=r"no 'photo' style.*strength=1.5"):
        StyleAugmentation(network, strength=1.5)


def test_in_tf_data(network, images):
    layer = StyleAugmentation(network, rate=1.0, seed=3)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2).map(lambda x: layer(x, training=True))
    batches = [b.numpy() for b in dataset]
    assert [b.shape for b in batches] == [(2, 16, 20, 3)] * 2
    reference = StyleAugmentation(network, rate=1.0, seed=3)
    for batch, start in zip(batches, (0, 2)):
        np.testing.assert_allclose(batch, reference(images[start:start + 2]), atol=ATOL, rtol=0)
    # Unbatched elements, and the element-indexed seeds that repeat under parallel calls.
    single = tf.data.Dataset.from_tensor_slices(images).map(lambda x: layer(x, training=True))
    assert [e.shape for e in single] == [(16, 20, 3)] * 4
    indexed = tf.data.Dataset.from_tensor_slices(images).enumerate().map(
        lambda i, x: layer.augment(x, tf.stack([tf.constant(11, tf.int64), i])), num_parallel_calls=2)
    for index, element in enumerate(indexed):
        np.testing.assert_allclose(element, layer.augment(images[index], [11, index]), atol=ATOL, rtol=0)


def _classifier(layer):
    inputs = keras.Input((16, 20, 3))
    x = layer(inputs)
    x = keras.layers.Conv2D(2, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


@pytest.mark.slow
def test_first_layer_of_a_keras_model_fits_and_round_trips(network, images, tmp_path):
    layer = StyleAugmentation(network, rate=1.0, seed=5)
    model = _classifier(layer)
    model.compile(optimizer="adam", loss="mse")
    before = [w.numpy().copy() for w in network.weights]
    history = model.fit(images, np.zeros((4, 1), "float32"), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for old, new in zip(before, network.weights):  # The network stays frozen.
        np.testing.assert_array_equal(old, new.numpy())
    np.testing.assert_array_equal(model.layers[1](images, training=False), images)
    path = tmp_path / "classifier.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode stays on
    restored = loaded.layers[1]
    assert isinstance(restored, StyleAugmentation)
    # The restored network stays frozen: the optimizer sees the classifier's variables only.
    assert len(loaded.trainable_variables) == len(model.trainable_variables) == 4
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)
    np.testing.assert_allclose(restored.augment(images, 8), layer.augment(images, 8), atol=1e-5)


def test_get_config_round_trip(network, images):
    layer = StyleAugmentation(network, rate=0.3, strength=(0.1, 0.9), concentration=[1.0, 3.0],
                              value_range=(-1, 1), seed=9, name="augment")
    config = layer.get_config()
    clone = StyleAugmentation.from_config(config)
    assert clone.get_config() == config
    clone.build((None, 16, 20, 3))
    clone.network.set_weights(network.get_weights())
    x = images / 127.5 - 1.0
    np.testing.assert_allclose(clone.augment(x, 1), layer.augment(x, 1), atol=1e-6)


def test_a_network_path_is_loaded(network, tmp_path):
    path = tmp_path / "styles.keras"
    network.save(path)
    layer = StyleAugmentation(str(path), rate=1.0, seed=0)
    assert layer.network.style_names == ["a", "b", "photo"]


@pytest.mark.parametrize("kwargs, match", [
    ({"rate": 1.5}, r"`rate` must be a probability in \[0, 1\]. Received: rate=1.5"),
    ({"rate": -0.1}, r"Received: rate=-0.1"),
    ({"rate": True}, r"Received: rate=True"),
    ({"strength": (1.0, 0.5)}, r"reversed.*Received: strength=\(1.0, 0.5\)"),
    ({"strength": (0.5, 3.0)}, r"\[0, 2\].*Received: strength=\(0.5, 3.0\)"),
    ({"strength": "high"}, r"Received: strength='high'"),
    ({"concentration": 0.0}, r"`concentration` must be.*a, b.*Received: concentration=0.0"),
    ({"concentration": [1.0, 2.0, 3.0]}, r"2 numbers.*Received: concentration=\[1.0, 2.0, 3.0\]"),
    ({"concentration": float("nan")}, r"Received: concentration=nan"),
    ({"value_range": (1, 0)}, r"Received: value_range=\(1, 0\)"),
    ({"seed": 1.5}, r"Received: seed=1.5"),
])
def test_bad_arguments(network, kwargs, match):
    with pytest.raises(ConfigError, match=match) as error:
        StyleAugmentation(network, **kwargs)
    assert "\n" not in str(error.value)


def test_bad_networks_and_images(network):
    single = random_transformer(seed=1, **SMALL)
    with pytest.raises(ConfigError, match="single style.*Received: a single-style network"):
        StyleAugmentation(single)
    only_photo = random_transformer(seed=1, style_names=["photo"], **SMALL)
    with pytest.raises(ConfigError, match=r"besides 'photo'. Received: style_names=\['photo'\]"):
        StyleAugmentation(only_photo)
    with pytest.raises(ConfigError, match="Received: network of type int"):
        StyleAugmentation(3)
    with pytest.raises(ImageError, match=r"Received: shape=\(2, 8, 8, 1\)"):
        StyleAugmentation(network).augment(np.zeros((2, 8, 8, 1), "float32"), 0)
