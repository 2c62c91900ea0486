"""Tests of nst_tf.inference: the compiled inference graph equals the Keras call of a TransformerNet."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ROOT, random_transformer  # noqa: I001
from nst_tf import inference
from nst_tf.errors import ConfigError
from nst_tf.inference import TransformerInference, blocked_kernel, inference_graph, pad_spatial, phase_kernel
from nst_tf.stylizer import load_transformer, stylize_image
from nst_tf.transformer import with_dtype_policy

SHIPPED = ROOT / "saved_models" / "styles" / "styles.keras"
# float32 rounding: the graph sums in another order (phase kernels, blocked head, oneDNN's
# batch norm), measured at most 2e-3 of a pixel level on [0, 255] (own statistics) for sides >= 16 px;
# smaller images have 2 x 2 bottleneck maps whose few-pixel statistics amplify rounding (6e-3 at 8 x 12).
ATOL = 5e-3
# Given statistics of another image can be far from the image's own, which amplifies rounding
# in near-constant channels: measured at most 0.04 levels (random networks) and 0.12 at one pixel of
# 37830 (the shipped network), mean 1e-4.
ATOL_GIVEN, MEAN_GIVEN = 0.25, 1e-3


def _photo(shape, seed=0):
    """Smooth random 'photos' float32 in [0, 255] (coarse noise, bilinearly upsampled)."""
    batch, height, width, _ = shape
    coarse = np.random.default_rng(seed).uniform(0, 255, (batch, max(2, height // 8), max(2, width // 8), 3))
    return tf.image.resize(coarse.astype("float32"), (height, width)).numpy()


@pytest.fixture(scope="module")
def net():
    return random_transformer()


@pytest.fixture(scope="module")
def graph(net):
    return TransformerInference(net)


@pytest.mark.parametrize("shape", [(1, 37, 50, 3), (2, 32, 48, 3), (1, 33, 17, 3), (3, 16, 20, 3)])
def test_equals_the_keras_call(net, graph, shape):
    x = _photo(shape, seed=shape[1])
    out = graph(x)
    assert out.shape == shape and out.dtype == tf.float32
    np.testing.assert_allclose(out, net(x), atol=ATOL, rtol=0)


def test_returned_and_given_statistics_match_the_keras_call(net, graph):
    thumbnail, x = _photo((1, 24, 32, 3), seed=1), _photo((1, 40, 44, 3), seed=2)
    _, expected = net(thumbnail, return_statistics=True)
    _, statistics = graph(thumbnail, return_statistics=True)
    (means, variances), (want_means, want_variances) = (graph.flatten_statistics(s) for s in (statistics, expected))
    assert len(means) == len(want_means) == 15
    for mean, variance, want_mean, want_variance in zip(means, variances, want_means, want_variances):
        assert mean.shape == want_mean.shape == variance.shape
        np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(variance, want_variance, rtol=1e-3, atol=1e-5)
    reference = net(x, statistics=expected)
    for given in (expected, statistics):  # The model's statistics and the graph's own are interchangeable.
        out = graph(x, statistics=given)
        np.testing.assert_allclose(out, reference, atol=ATOL_GIVEN, rtol=0)
        assert float(np.abs(out - reference).mean()) < MEAN_GIVEN
    # Statistics of one image apply to each image of a batch, as in the Keras call.
    batch = np.concatenate([x, x[:, ::-1]])
    np.testing.assert_allclose(graph(batch, statistics=expected), net(batch, statistics=expected),
                               atol=ATOL_GIVEN, rtol=0)


def test_a_batch_equals_its_images_one_by_one(graph):
    x = _photo((3, 20, 28, 3), seed=3)
    whole = graph(x).numpy()
    for index in range(3):
        np.testing.assert_array_equal(whole[index:index + 1], graph(x[index:index + 1]))


@pytest.mark.slow
def test_traced_once_for_every_size_and_batch(net):
    graph = TransformerInference(net)
    for shape in [(1, 16, 16, 3), (2, 21, 13, 3), (1, 64, 40, 3), (1, 9, 4, 3)]:
        assert graph(np.zeros(shape, np.float32)).shape == shape
    assert graph.stylize.experimental_get_tracing_count() == 1
    statistics = graph(np.zeros((1, 16, 16, 3), np.float32), return_statistics=True)[1]
    for shape in [(1, 16, 16, 3), (2, 20, 12, 3)]:
        graph(np.zeros(shape, np.float32), statistics=statistics)
    assert graph.stylize_with_statistics.experimental_get_tracing_count() == 1


def test_stylize_image_reuses_one_cached_graph_per_model_and_precision(net):
    assert inference_graph(net) is inference_graph(net)
    assert inference_graph(net, "bfloat16") is not inference_graph(net)
    stylize_image(net, _photo((1, 12, 20, 3)))
    stylize_image(net, _photo((1, 28, 16, 3)))
    assert inference_graph(net).stylize.experimental_get_tracing_count() == 1


def test_the_cache_does_not_keep_models_alive():
    import gc

    model = random_transformer(seed=3, filters=(4, 8, 8), num_residual_blocks=1)
    stylize_image(model, _photo((1, 16, 16, 3)))
    assert model in inference._CACHE
    count = len(inference._CACHE)
    del model
    gc.collect()
    assert len(inference._CACHE) == count - 1


@pytest.mark.parametrize("options", [{"phase_upsampling": False}, {"head_block": 1}, {"head_block": 2}])
def test_each_rewrite_alone_is_exact(net, options):
    x = _photo((1, 36, 28, 3), seed=4)
    np.testing.assert_allclose(TransformerInference(net, **options)(x), net(x), atol=ATOL, rtol=0)


def test_other_network_sizes(net):
    small = random_transformer(seed=1, filters=(8, 16, 16), num_residual_blocks=0)
    x = _photo((2, 22, 30, 3), seed=5)
    np.testing.assert_allclose(TransformerInference(small)(x), small(x), atol=ATOL, rtol=0)


def test_follows_weight_changes(net):
    model = random_transformer(seed=2, filters=(4, 8, 8), num_residual_blocks=1)
    graph = TransformerInference(model)
    x = _photo((1, 16, 16, 3), seed=6)
    before = graph(x).numpy()
    model.head.conv.kernel.assign(model.head.conv.kernel * 2.0)
    after = graph(x).numpy()
    assert np.abs(after - before).max() > 1
    np.testing.assert_allclose(after, model(x), atol=ATOL, rtol=0)


@pytest.mark.slow
def test_bfloat16_graph(net):
    x = _photo((1, 32, 32, 3), seed=7)
    graph = inference_graph(net, "bfloat16")
    out = graph(x)
    assert graph.compute_dtype == tf.bfloat16 and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    difference = np.abs(out - net(x))
    assert 0 < difference.mean() < 3  # bfloat16 keeps 8 bits of mantissa; the statistics stay float32.
    recast = with_dtype_policy(net, "mixed_bfloat16")
    assert inference_graph(recast).compute_dtype == tf.bfloat16  # The policy's compute dtype by default.
    np.testing.assert_allclose(inference_graph(recast)(x), out, atol=0)


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped model not present")
def test_shipped_multi_style_network():
    model = load_transformer(SHIPPED)
    graph = TransformerInference(model)
    x = _photo((1, 97, 130, 3), seed=8)
    style = model.style_weights({model.style_names[0]: 1, model.style_names[1]: 1})
    np.testing.assert_allclose(graph(x, style=style), model(x, style=style), atol=ATOL, rtol=0)
    _, statistics = model(_photo((1, 48, 64, 3), seed=9), style=style, return_statistics=True)
    out, reference = graph(x, style=style, statistics=statistics), model(x, style=style, statistics=statistics)
    np.testing.assert_allclose(out, reference, atol=ATOL_GIVEN, rtol=0)
    assert float(np.abs(out - reference).mean()) < MEAN_GIVEN


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC"])
@pytest.mark.parametrize("pad", [1, 2, 4])
def test_pad_spatial_equals_tf_pad(mode, pad):
    x = tf.constant(np.random.default_rng(pad).standard_normal((2, 7, 9, 3)).astype("float32"))
    np.testing.assert_array_equal(pad_spatial(x, pad, mode), tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]],
                                                                     mode=mode))


def test_phase_kernel_equals_upsample_then_convolve():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((1, 5, 6, 4)))
    kernel = tf.constant(rng.standard_normal((3, 3, 4, 3)))
    upsampled = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
    expected = tf.nn.conv2d(tf.pad(upsampled, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT"), kernel, 1, "VALID")
    phases = tf.nn.conv2d(pad_spatial(x, 1, "SYMMETRIC"), phase_kernel(kernel), 1, "VALID")
    assert phases.shape == (1, 6, 7, 12)
    np.testing.assert_allclose(inference._interleave_phases(phases), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("block", [2, 4])
def test_blocked_kernel_equals_the_plain_convolution(block):
    rng = np.random.default_rng(block)
    x = tf.constant(rng.standard_normal((1, 16, 20, 5)))
    kernel = tf.constant(rng.standard_normal((9, 9, 5, 3)))
    expected = tf.nn.conv2d(tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT"), kernel, 1, "VALID")
    blocked = tf.nn.conv2d(tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="REFLECT"),
                           blocked_kernel(kernel, block), block, "VALID")
    np.testing.assert_allclose(tf.nn.depth_to_space(blocked, block), expected, rtol=1e-12, atol=1e-12)


def test_bad_arguments(net, graph):
    with pytest.raises(ConfigError, match="built nst_tf TransformerNet"):
        TransformerInference(keras.Sequential([keras.layers.Dense(3)]))
    with pytest.raises(ConfigError, match="needs an nst_tf TransformerNet"):
        inference_graph(lambda images: images)
    with pytest.raises(ConfigError, match="compute_dtype"):
        TransformerInference(net, compute_dtype="float16")
    with pytest.raises(ConfigError, match="head_block"):
        TransformerInference(net, head_block=3)
    with pytest.raises(ConfigError, match="statistics") as info:
        graph(_photo((1, 16, 16, 3)), statistics=[(tf.zeros([1, 1, 1, 32]), tf.ones([1, 1, 1, 32]))])
    assert "\n" not in str(info.value) and "Received:" in str(info.value)


# ---------------------------------------------------------------- multi-style networks


@pytest.mark.parametrize("compute_dtype, atol", [("float32", ATOL), ("bfloat16", None)])
def test_graph_equals_keras_call_for_an_index_and_a_blend(compute_dtype, atol):
    model = random_transformer(3, filters=(8, 16, 16), num_residual_blocks=2, style_names=["a", "b", "c"])
    images = _photo((2, 20, 28, 3))
    graph = inference_graph(model, compute_dtype)
    for style in (np.array([2, 0]), np.array([[0.2, 0.5, 0.3], [0.0, 1.0, 0.0]], "float32")):
        expected = np.asarray(model(images, style=style))
        got = np.asarray(graph(images, style=style))
        if atol is None:  # bfloat16 convolutions: a few levels, as for single-style networks.
            assert np.abs(got - expected).mean() < 3.0
        else:
            np.testing.assert_allclose(got, expected, atol=atol)
    one, statistics = graph(images[:1], style=[1], return_statistics=True)
    np.testing.assert_allclose(graph(images[:1], style=[1], statistics=statistics), one, atol=ATOL)
    with pytest.raises(ConfigError, match="pass `style`"):
        graph(images)


def test_round_to_uint8_matches_the_host_conversion():
    from nst_tf.images import to_uint8

    values = np.array([[-5.0, 0.4, 0.5, 0.6, 1.5, 127.5, 254.6, 255.5, 300.0]], np.float32)
    rounded = tf.function(inference.round_to_uint8)(tf.constant(values))  # In a graph, as the signatures run it.
    assert rounded.dtype == tf.uint8 and rounded.shape == values.shape
    np.testing.assert_array_equal(rounded, [[0, 0, 0, 1, 2, 128, 255, 255, 255]])
    np.testing.assert_array_equal(rounded, to_uint8(values))
