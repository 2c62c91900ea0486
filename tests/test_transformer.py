"""Tests of nst_tf.transformer: shapes, serialization, loading errors, tiled inference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from nst_tf.errors import ConfigError, ImageError, NstError, WeightsError
from nst_tf.transformer import MIN_INPUT_SIZE, TransformerNet, load_transformer, stylize_image, stylize_tiled

SMALL = {"filters": (8, 16, 16), "num_residual_blocks": 1}  # Same architecture, 1/8 of the channels.


def _image(height, width, batch=1, seed=0):
    return (np.random.default_rng(seed).random((batch, height, width, 3)) * 255).astype("float32")


def _smooth_image(height, width):
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([np.sin(7 * x) * np.cos(5 * y), np.cos(3 * x + 2 * y), x * y], -1)
    return ((image + 1) * 127.5).clip(0, 255)[None].astype("float32")


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    model = TransformerNet()
    model.build((None, None, None, 3))
    return model


@pytest.mark.parametrize("size", [(MIN_INPUT_SIZE, MIN_INPUT_SIZE), (5, 7), (31, 17), (32, 48), (65, 33)])
def test_output_shape_equals_input_shape(net, size):
    out = net(_image(*size, batch=2))
    assert out.shape == (2, *size, 3) and out.dtype == tf.float32
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255


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
    np.testing.assert_allclose(load_transformer(path)(x), net(x), atol=1e-5)


def test_mixed_bfloat16_output_is_float32_and_close(net, tmp_path):
    path = tmp_path / "net.keras"
    net.save(path)
    fast = load_transformer(path, dtype="mixed_bfloat16")
    assert fast.dtype_policy.name == "mixed_bfloat16"
    x = _smooth_image(32, 32)
    out = fast(x)
    assert out.dtype == tf.float32
    assert float(tf.reduce_mean(tf.abs(out - net(x)))) < 10  # bfloat16 has 8 bits of mantissa.


def _write(path, content):
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.keras", "not found"),
    (lambda p: p, "folder"),
    (lambda p: _write(p / "model.h5", b"x"), ".keras archive"),
    (lambda p: _write(p / "bad.keras", b"not a zip file"), "corrupt"),
    (lambda p: _write(p / "empty.keras", b""), "corrupt"),
])
def test_load_transformer_errors(tmp_path, make, message):
    with pytest.raises(WeightsError, match=message) as info:
        load_transformer(make(tmp_path))
    assert "\n" not in str(info.value) and "Received: path=" in str(info.value)


def test_load_transformer_rejects_other_models(tmp_path):
    path = tmp_path / "other.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(WeightsError, match="not an nst_tf TransformerNet"):
        load_transformer(path)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="filters"):
        TransformerNet(filters=(8, 16))
    with pytest.raises(ConfigError, match="num_residual_blocks"):
        TransformerNet(num_residual_blocks=-1)


@pytest.mark.slow
def test_stylize_image(net):
    single = stylize_image(net, _image(12, 10)[0])
    assert single.shape == (1, 12, 10, 3) and single.dtype == np.float32
    batch = _smooth_image(20, 28)
    # The compiled inference graph (nst_tf.inference) computes the Keras call up to float rounding.
    np.testing.assert_allclose(stylize_image(net, batch), net(batch), atol=5e-3, rtol=0)
    bf16 = stylize_image(net, batch, precision="bfloat16")
    assert bf16.dtype == np.float32 and 0 < np.abs(bf16 - net(batch)).mean() < 3
    with pytest.raises(ConfigError, match="precision"):
        stylize_image(net, batch, precision="float16")
    with pytest.raises(ConfigError, match="TransformerNet models only"):
        stylize_image(lambda images: images, batch, precision="bfloat16")
    np.testing.assert_array_equal(stylize_image(lambda images: 255 - images, batch), 255 - batch)  # Called as is.
    with pytest.raises(ImageError, match="too small"):
        stylize_image(net, _image(3, 10))
    with pytest.raises(ImageError, match="shape"):
        stylize_image(net, np.zeros((4, 4)))


@pytest.mark.parametrize("tile, overlap", [(64, 33), (4, 0), (64, -1), (64.0, 8)])
def test_stylize_tiled_rejects_bad_tiles(net, tile, overlap):
    with pytest.raises(ConfigError) as info:
        stylize_tiled(net, _image(16, 16), tile=tile, overlap=overlap)
    assert isinstance(info.value, NstError) and "Received:" in str(info.value)


def test_stylize_tiled_small_image_is_one_pass(net):
    x = _image(30, 20)
    np.testing.assert_allclose(stylize_tiled(net, x, tile=32, overlap=8), stylize_image(net, x), atol=1e-4)


@pytest.fixture(scope="module")
def small_net():
    keras.utils.set_random_seed(1)
    model = TransformerNet(**SMALL)
    model.build((None, None, None, 3))
    return model


def test_tiled_equals_untiled_away_from_seams(small_net):
    # 94 px is padded to 96 (1 px each side) as the network pads it; 64 px tiles start at 0 and 32,
    # so padded rows/columns 32..63 blend two tiles and the rest comes from one tile, at least 32 px
    # from its inner edges: more than the receptive field radius of SMALL (4+1+2+2*4+2+1+4 = 22 px).
    x = _smooth_image(94, 94)
    whole = stylize_image(small_net, x)[0]
    tiled = stylize_tiled(small_net, x, tile=64, overlap=32, thumbnail_size=94)[0]  # Exact statistics.
    assert tiled.shape == whole.shape
    one_tile = np.r_[0:31, 63:94]
    far = np.ix_(one_tile, one_tile)
    np.testing.assert_allclose(tiled[far], whole[far], atol=1e-3)
    assert np.abs(tiled - whole).mean() < 2  # In the blended band: close, not equal.


def test_tiled_has_no_visible_seam(small_net):
    x = _smooth_image(96, 160)
    whole = stylize_image(small_net, x)[0]
    tiled = stylize_tiled(small_net, x, tile=64, overlap=16)[0]  # Thumbnail statistics (64 px).
    # Colour and contrast follow the whole image (thumbnail instance normalization) ...
    assert np.abs(tiled.mean((0, 1)) - whole.mean((0, 1))).max() < 6
    # ... and neighbouring columns differ no more across tile borders than elsewhere.
    jumps = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    reference = np.abs(np.diff(whole, axis=1)).mean(axis=(0, 2))
    assert jumps.max() < 1.5 * reference.max() + 2


# ---------------------------------------------------------------- multi-style networks (Dumoulin et al. 2017)

STYLES = ["a", "b", "photo"]


def _multi(seed=0, names=STYLES, **kwargs):
    from helpers import random_transformer

    return random_transformer(seed, style_names=names, **{**SMALL, **kwargs})


def _single_with_blend(multi, weights):
    """The single-style network whose gamma and beta are `weights` times the multi-style tables."""
    single = TransformerNet(**SMALL)
    single.build((None, None, None, 3))
    for target, source in zip(single.weights, multi.weights, strict=True):
        value = source.numpy()
        target.assign(np.asarray(weights, "float32") @ value if value.ndim == 2 and target.shape.rank == 1
                      else value)
    return single


def test_selecting_style_k_equals_a_single_style_network_with_its_gamma_and_beta():
    multi, x = _multi(), _image(20, 24)
    for k in range(len(STYLES)):
        single = _single_with_blend(multi, np.eye(len(STYLES))[k])
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
    loaded = load_transformer(path)
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


def test_stylize_image_and_tiled_take_a_style():
    multi, x = _multi(), _smooth_image(40, 44)
    weights = multi.style_weights({"a": 1, "b": 1})
    whole = stylize_image(multi, x, style=weights)
    np.testing.assert_allclose(whole, multi(x, style=weights), atol=0.05)
    tiled = stylize_tiled(multi, x, tile=24, overlap=8, thumbnail_size=64, style=weights)
    reference = stylize_tiled(_single_with_blend(multi, weights), x, tile=24, overlap=8, thumbnail_size=64)
    np.testing.assert_allclose(tiled, reference, atol=0.05)
