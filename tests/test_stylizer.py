"""Tests of nst_tf.stylizer: loading networks, whole-image and tiled stylization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import SMALL, noise_images, random_transformer, single_style_with_blend, smooth_image  # noqa: I001
from nst_tf.errors import ConfigError, ImageError, NstError, WeightsError
from nst_tf.stylizer import load_stylizer, load_transformer, stylize_image, stylize_tiled
from nst_tf.transformer import TransformerNet

_image = noise_images


def _multi(seed=0, names=("a", "b", "photo")):
    return random_transformer(seed, style_names=list(names), **SMALL)


def test_load_transformer_and_load_stylizer_read_a_keras_file(net, tmp_path):
    path = tmp_path / "net.keras"
    net.save(path)
    x = _image(23, 30, seed=1)
    for loaded in (load_transformer(path), load_stylizer(path)):
        assert isinstance(loaded, TransformerNet)
        np.testing.assert_allclose(loaded(x), net(x), atol=1e-5)


def test_mixed_bfloat16_output_is_float32_and_close(net, tmp_path):
    path = tmp_path / "net.keras"
    net.save(path)
    fast = load_transformer(path, dtype="mixed_bfloat16")
    assert fast.dtype_policy.name == "mixed_bfloat16"
    x = smooth_image(32, 32)
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



@pytest.mark.slow
def test_stylize_image(net):
    single = stylize_image(net, _image(12, 10)[0])
    assert single.shape == (1, 12, 10, 3) and single.dtype == np.float32
    batch = smooth_image(20, 28)
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
    x = smooth_image(94, 94)
    whole = stylize_image(small_net, x)[0]
    tiled = stylize_tiled(small_net, x, tile=64, overlap=32, thumbnail_size=94)[0]  # Exact statistics.
    assert tiled.shape == whole.shape
    one_tile = np.r_[0:31, 63:94]
    far = np.ix_(one_tile, one_tile)
    np.testing.assert_allclose(tiled[far], whole[far], atol=1e-3)
    assert np.abs(tiled - whole).mean() < 2  # In the blended band: close, not equal.


def test_tiled_has_no_visible_seam(small_net):
    x = smooth_image(96, 160)
    whole = stylize_image(small_net, x)[0]
    tiled = stylize_tiled(small_net, x, tile=64, overlap=16)[0]  # Thumbnail statistics (64 px).
    # Colour and contrast follow the whole image (thumbnail instance normalization) ...
    assert np.abs(tiled.mean((0, 1)) - whole.mean((0, 1))).max() < 6
    # ... and neighbouring columns differ no more across tile borders than elsewhere.
    jumps = np.abs(np.diff(tiled, axis=1)).mean(axis=(0, 2))
    reference = np.abs(np.diff(whole, axis=1)).mean(axis=(0, 2))
    assert jumps.max() < 1.5 * reference.max() + 2



def test_stylize_image_and_tiled_take_a_style():
    multi, x = _multi(), smooth_image(40, 44)
    weights = multi.style_weights({"a": 1, "b": 1})
    whole = stylize_image(multi, x, style=weights)
    np.testing.assert_allclose(whole, multi(x, style=weights), atol=0.05)
    tiled = stylize_tiled(multi, x, tile=24, overlap=8, thumbnail_size=64, style=weights)
    reference = stylize_tiled(single_style_with_blend(multi, weights), x, tile=24, overlap=8, thumbnail_size=64)
    np.testing.assert_allclose(tiled, reference, atol=0.05)
