"""nst_tf.backbones: the registry, Caffe preprocessing, weights and the errors that show the way."""

import numpy as np
import pytest

from nst_tf import backbones
from nst_tf.errors import ConfigError, WeightsError


def test_preprocessing_is_caffe_bgr_minus_the_imagenet_mean():
    x = np.zeros([1, 2, 2, 3], np.float32)
    x[..., 0] = 200.0  # Red.
    out = np.asarray(backbones.preprocess_caffe(x))
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 200.0 - 123.68], rtol=1e-6)
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 3, 4, 3)).astype("float32")
    expected = rgb[..., ::-1] - np.array(backbones.CAFFE_BGR_MEAN, np.float32)
    np.testing.assert_allclose(np.asarray(backbones.preprocess_caffe(rgb)), expected, rtol=1e-6)


def test_registry_defaults_are_feature_layers_in_depth_order():
    for name, spec in backbones.BACKBONES.items():
        assert spec.name == name and backbones.get_spec(name) is spec
        assert set(spec.content_layers + spec.style_layers) <= set(spec.feature_layers), name
    vgg19 = backbones.get_spec("vgg19").feature_layers
    assert vgg19[:3] == ("block1_conv1", "block1_conv2", "block1_pool") and vgg19[-1] == "block5_pool"
    assert len([n for n in vgg19 if "conv" in n]) == 16 and len(backbones.get_spec("vgg16").feature_layers) == 18


@pytest.mark.parametrize("name", ["vgg16", "squeezenet1_1"])
def test_built_network_has_every_registered_layer(name):
    model = backbones.build_backbone(name, weights=None)
    names = [layer.name for layer in model.layers]
    positions = [names.index(layer) for layer in backbones.get_spec(name).feature_layers]
    assert positions == sorted(positions)  # In depth order, as activation_elements assumes.


def test_unknown_backbone_and_pooling():
    with pytest.raises(ConfigError, match="Unknown backbone. Choose one of vgg19, vgg16, squeezenet1_1"):
        backbones.get_spec("resnet50")
    with pytest.raises(ConfigError, match="Received: pooling='median'"):
        backbones.build_backbone("vgg16", weights=None, pooling="median")


def test_missing_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="Weights file not found.*'none'"):
        backbones.build_backbone("vgg16", weights=tmp_path / "nope.h5")


def test_offline_imagenet_error_names_the_cause_and_the_squeezenet_way(monkeypatch, capsys):
    def offline(**kwargs):
        print("Downloading data from https://storage.googleapis.com/x.h5")  # As keras.utils.get_file does.
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] "
                        "Temporary failure in name resolution")

    offline.__name__ = "VGG19"
    monkeypatch.setattr(backbones, "_application", lambda name: offline)
    with pytest.raises(WeightsError) as error:
        backbones.build_backbone("vgg19", weights="imagenet")
    message = str(error.value)
    assert "(no network access? [Errno -3] Temporary failure in name resolution)" in message
    assert "URL fetch" not in message and capsys.readouterr().out == ""  # The error is the only line.
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "--backbone squeezenet1_1" in message and backbones.SQUEEZENET_WEIGHTS_FILE in message


def test_squeezenet_file_given_to_vgg_suggests_the_backbone(tmp_path):
    fake = tmp_path / backbones.SQUEEZENET_WEIGHTS_FILE
    fake.write_bytes(b"not an h5 file")
    with pytest.raises(WeightsError, match="does not fit VGG16.*add --backbone squeezenet1_1"):
        backbones.build_backbone("vgg16", weights=fake)


def test_activation_elements_count_layers_up_to_the_deepest():
    # VGG16 block1 at 8x8: two 64-channel convs at full size, nothing deeper.
    assert backbones.activation_elements("vgg16", ["block1_conv2"], 8, 8) == 2 * 64 * 8 * 8
    with_pool = backbones.activation_elements("vgg16", ["block1_conv1", "block1_pool"], 8, 8)
    assert with_pool == 2 * 64 * 64 + 64 * 16
    with pytest.raises(ConfigError, match="Unknown vgg16 layer 'fire2'"):
        backbones.activation_elements("vgg16", ["fire2"], 8, 8)
