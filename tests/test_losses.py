import numpy as np
import pytest
import tensorflow as tf

from nst_tf import losses


def test_gram_matrix_matches_hand_computation():
    # Two locations (1x2), two channels: F = [[1, 2], [3, 4]] (rows are locations).
    features = tf.constant([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = np.array([[1 * 1 + 3 * 3, 1 * 2 + 3 * 4], [2 * 1 + 4 * 3, 2 * 2 + 4 * 4]]) / 2.0
    np.testing.assert_allclose(losses.gram_matrix(features).numpy()[0], expected)


def test_gram_matrix_is_batch_aware():
    a = tf.random.stateless_normal([1, 5, 6, 4], seed=[1, 2])
    b = tf.random.stateless_normal([1, 5, 6, 4], seed=[3, 4])
    grams = losses.gram_matrix(tf.concat([a, b], 0))
    assert grams.shape == (2, 4, 4)
    np.testing.assert_allclose(grams[1].numpy(), losses.gram_matrix(b)[0].numpy(), rtol=1e-5)


def test_gram_matrix_is_normalized_by_locations():
    # A feature map tiled 3x3 has the same statistics, so the same normalized Gram matrix.
    small = tf.random.stateless_uniform([1, 4, 5, 3], seed=[5, 6])
    tiled = tf.tile(small, [1, 3, 3, 1])
    np.testing.assert_allclose(losses.gram_matrix(tiled).numpy(), losses.gram_matrix(small).numpy(), rtol=1e-5)


def test_guided_gram_uses_only_the_masked_region():
    features = tf.random.stateless_normal([1, 6, 6, 3], seed=[7, 8])
    mask = np.zeros([1, 6, 6, 1], np.float32)
    mask[:, :, :3] = 1.0
    changed = features.numpy().copy()
    changed[:, :, 3:] = 100.0  # Outside the mask: must not matter.
    np.testing.assert_allclose(losses.gram_matrix(features, mask).numpy(),
                               losses.gram_matrix(changed, mask).numpy(), rtol=1e-5)
    np.testing.assert_allclose(losses.gram_matrix(features, mask).numpy(),
                               losses.gram_matrix(features[:, :, :3]).numpy(), rtol=1e-5)


def test_style_layer_loss_equals_gatys_equation_4():
    f = tf.random.stateless_normal([1, 3, 4, 5], seed=[1, 1])
    g = tf.random.stateless_normal([1, 3, 4, 5], seed=[2, 2])
    n, m = 5, 12
    raw = lambda x: tf.einsum("bijc,bijd->bcd", x, x)  # noqa: E731 - Gatys' unnormalized Gram.
    expected = tf.reduce_sum(tf.square(raw(f) - raw(g))) / (4.0 * n**2 * m**2)
    actual = losses.style_layer_loss(losses.gram_matrix(f), losses.gram_matrix(g))
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-5)


def test_style_loss_weights_layers():
    feats = {"a": tf.ones([1, 2, 2, 2]), "b": 2 * tf.ones([1, 2, 2, 2])}
    targets = {"a": tf.zeros([1, 2, 2]), "b": tf.zeros([1, 2, 2])}
    la = losses.style_layer_loss(losses.gram_matrix(feats["a"]), targets["a"])
    lb = losses.style_layer_loss(losses.gram_matrix(feats["b"]), targets["b"])
    total = losses.style_loss(feats, targets, {"a": 0.25, "b": 0.75})
    np.testing.assert_allclose(total.numpy(), 0.25 * la.numpy() + 0.75 * lb.numpy(), rtol=1e-6)
    np.testing.assert_allclose(losses.style_loss(feats, targets).numpy(), (la.numpy() + lb.numpy()) / 2, rtol=1e-6)


def test_content_loss_is_mean_squared_difference():
    a = tf.constant([[[[1.0, 2.0]]]])
    b = tf.constant([[[[3.0, 6.0]]]])
    assert losses.content_loss(a, b).numpy() == pytest.approx((4 + 16) / 2)
    assert losses.content_loss(a, a).numpy() == 0.0


def test_total_variation_is_zero_on_constant_image_and_positive_on_edges():
    assert losses.total_variation_loss(tf.fill([1, 8, 8, 3], 128.0)).numpy() == 0.0
    stripes = np.zeros([1, 4, 4, 1], np.float32)
    stripes[:, :, ::2] = 10.0  # Every horizontal neighbour differs by 10.
    assert losses.total_variation_loss(stripes).numpy() == pytest.approx(10.0)


def test_saturation_loss_is_zero_inside_the_threshold_and_squared_beyond():
    inside = tf.constant([[[[2.5, -2.5, 0.0]]]])
    assert losses.saturation_loss(inside).numpy() == 0.0
    logits = tf.constant([[[[4.5, -3.5, 1.0]]]])  # Excess 2 and 1 beyond 2.5; the third is inside.
    assert losses.saturation_loss(logits).numpy() == pytest.approx((4 + 1) / 3)


def test_saturation_loss_has_gradient_where_tanh_has_none():
    logits = tf.Variable([[[[8.0, -8.0, 0.5]]]])
    with tf.GradientTape(persistent=True) as tape:
        pixels = 127.5 * (tf.tanh(logits) + 1.0)
        penalty = losses.saturation_loss(logits)
    through_tanh = tape.gradient(pixels, logits).numpy().ravel()
    pull = tape.gradient(penalty, logits).numpy().ravel()
    assert abs(through_tanh[0]) < 1e-3 and abs(through_tanh[1]) < 1e-3  # Saturated: the image losses stall.
    assert pull[0] > 1 and pull[1] < -1 and pull[2] == 0.0  # Descent moves both back toward zero.


def _blob_activations(value, side, size=64, channels=2, seed=0):
    """Unit noise ``[1, size, size, channels]`` with `value` added on a ``side x side`` square."""
    base = np.random.default_rng(seed).normal(0, 1, (1, size, size, channels)).astype("float32")
    base[:, 20:20 + side, 30:30 + side] += value
    return base


def test_droplet_loss_flags_a_blob_but_not_texture_or_a_thin_edge():
    assert losses.droplet_loss([_blob_activations(0.0, 0)]).numpy() == 0.0  # Texture: ~1 std everywhere.
    edge = np.random.default_rng(1).normal(0, 1, (1, 64, 64, 2)).astype("float32")
    edge[:, 32] += 200.0  # A one-pixel line: about 8 std, but one row of each 5 x 5 window.
    assert losses.droplet_loss([edge]).numpy() == 0.0
    blob = losses.droplet_loss([_blob_activations(200.0, 6)]).numpy()
    assert blob > 0.1
    # Standardized per channel: the same pattern at any scale or offset has the same loss.
    scaled = losses.droplet_loss([_blob_activations(200.0, 6) * 1000.0 - 5.0]).numpy()
    assert scaled == pytest.approx(blob, rel=1e-3)
    # The mean over the activations given.
    pair = losses.droplet_loss([_blob_activations(200.0, 6), _blob_activations(0.0, 0)]).numpy()
    assert pair == pytest.approx(blob / 2, rel=1e-5)


def test_droplet_loss_descent_shrinks_the_blob():
    activations = tf.Variable(_blob_activations(12.0, 6))
    initial = float(losses.droplet_loss([activations]))
    for _ in range(30):
        with tf.GradientTape() as tape:
            penalty = losses.droplet_loss([activations])
        gradient = tape.gradient(penalty, activations)
        if _ == 0:
            assert float(tf.reduce_mean(gradient[:, 20:26, 30:36])) > 0  # Descent lowers the blob.
        activations.assign_sub(200.0 * gradient)
    assert initial > 0.01 and float(losses.droplet_loss([activations])) < 0.5 * initial
    values = activations.numpy()
    assert values[:, 20:26, 30:36].mean() < 11.0  # The blob itself went down.


def test_keras_loss_classes_match_functions():
    a = tf.random.stateless_normal([2, 4, 4, 3], seed=[3, 3])
    b = tf.random.stateless_normal([2, 4, 4, 3], seed=[4, 4])
    expected = losses.style_layer_loss(losses.gram_matrix(b), losses.gram_matrix(a))
    np.testing.assert_allclose(losses.GramStyleLoss()(a, b).numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(losses.TotalVariationLoss()(a, b).numpy(),
                               losses.total_variation_loss(b).numpy(), rtol=1e-5)
    restored = losses.GramStyleLoss.from_config(losses.GramStyleLoss(name="s").get_config())
    assert restored.name == "s"


@pytest.mark.parametrize("masked", [False, True])
def test_gram_matrix_gradient_equals_the_einsum_reference(masked):
    # gram_matrix has a hand-written gradient: check value and gradient against plain einsum.
    features = tf.random.stateless_uniform((2, 5, 4, 3), seed=(1, 2))
    target = tf.random.stateless_uniform((2, 3, 3), seed=(3, 4))
    mask = tf.random.stateless_uniform((2, 5, 4, 1), seed=(5, 6)) if masked else tf.ones((2, 5, 4, 1))

    def reference(x):
        x = x * mask
        return tf.einsum("bijc,bijd->bcd", x, x) / tf.reduce_sum(tf.square(mask), axis=[1, 2, 3])[:, None, None]

    results = []
    for gram in (lambda x: losses.gram_matrix(x, mask if masked else None), reference):
        with tf.GradientTape() as tape:
            tape.watch(features)
            value = gram(features)
            loss = tf.reduce_sum(tf.square(value - target) * tf.range(9.0, dtype=tf.float32)[None, :3, None])
        results.append((value, tape.gradient(loss, features)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)
