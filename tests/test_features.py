import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from nst_tf import backbones
from nst_tf.errors import ConfigError, WeightsError
from nst_tf.features import FeatureExtractor

RNG = np.random.default_rng(0)


def image(size=48):
    return RNG.uniform(0, 255, (1, size, size, 3)).astype("float32")


@pytest.mark.parametrize("backbone", ["vgg19", "vgg16", "squeezenet1_1"])
def test_returns_exactly_requested_layers_and_stops_at_deepest(backbone):
    spec = backbones.BACKBONES[backbone]
    wanted = [spec.feature_layers[3], spec.feature_layers[0]]
    extractor = FeatureExtractor(wanted, backbone, weights=None)
    out = extractor(image())
    assert list(out) == wanted
    built = [layer.name for layer in extractor.network.layers]
    assert built[-1] == spec.feature_layers[3]  # Truncated right after the deepest layer.
    assert not set(spec.feature_layers[4:]) & set(built)


@pytest.mark.slow
def test_vgg19_feature_shapes_and_min_size():
    extractor = FeatureExtractor(["block1_conv1", "block3_conv1", "block5_conv1"], weights=None)
    out = extractor(image(64))
    assert out["block1_conv1"].shape == (1, 64, 64, 64)
    assert out["block3_conv1"].shape == (1, 16, 16, 256)
    assert out["block5_conv1"].shape == (1, 4, 4, 512)
    assert extractor.min_input_size == 16  # Four 2x2 poolings before block5.
    assert FeatureExtractor(["block1_conv1"], weights=None).min_input_size == 1


def test_random_weights_are_seeded():
    x = image()
    a = FeatureExtractor(["block2_conv1"], "vgg16", weights=None)(x)
    b = FeatureExtractor(["block2_conv1"], "vgg16", weights=None)(x)
    np.testing.assert_array_equal(a["block2_conv1"].numpy(), b["block2_conv1"].numpy())


def test_average_pooling_option_replaces_max_pooling():
    extractor = FeatureExtractor(["block3_conv1"], weights=None, pooling="avg")
    kinds = {type(layer).__name__ for layer in extractor.network.layers}
    assert "AveragePooling2D" in kinds and "MaxPooling2D" not in kinds
    base = FeatureExtractor(["block3_conv1"], weights=None)
    x = image(32)
    assert not np.allclose(extractor(x)["block3_conv1"].numpy(), base(x)["block3_conv1"].numpy())


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ConfigError, match=r"Unknown vgg19 layer 'conv4_2'.*block4_conv2.*Received"):
        FeatureExtractor(["conv4_2"], weights=None)


def test_unknown_backbone_and_pooling():
    with pytest.raises(ConfigError, match="Unknown backbone.*resnet"):
        FeatureExtractor(["x"], "resnet", weights=None)
    with pytest.raises(ConfigError, match="pooling"):
        FeatureExtractor(["block1_conv1"], weights=None, pooling="median")


def test_missing_and_wrong_weights_files(tmp_path, squeezenet_weights):
    with pytest.raises(WeightsError, match="not found.*nope.h5"):
        FeatureExtractor(["block1_conv1"], weights=str(tmp_path / "nope.h5"))
    with pytest.raises(WeightsError, match="does not fit VGG19"):
        FeatureExtractor(["block1_conv1"], weights=str(squeezenet_weights))
    vgg_file = tmp_path / "vgg.weights.h5"
    backbones.build_backbone("vgg16", weights=None).save_weights(vgg_file)
    with pytest.raises(WeightsError, match="not SqueezeNet"):
        FeatureExtractor(["fire2"], "squeezenet1_1", weights=str(vgg_file))


def test_squeezenet_imagenet_weights_load_and_are_real(squeezenet_weights):
    extractor = FeatureExtractor(["conv1", "fire9"], "squeezenet1_1", weights=str(squeezenet_weights))
    kernel = extractor.network.get_layer("conv1").get_weights()[0]
    import h5py

    with h5py.File(squeezenet_weights) as h5:
        np.testing.assert_array_equal(kernel, h5["conv1"]["conv1"]["uniform1"][()] if "conv1" in h5["conv1"]
                                      else h5["conv1"]["uniform1"][()])
    out = extractor(image(96))
    assert out["fire9"].shape[-1] == 512 and float(np.mean(out["fire9"])) > 0


@pytest.mark.slow
def test_imagenet_offline_uses_keras_cache_or_says_which_file(tmp_path, squeezenet_weights):
    # Runs in a subprocess because Keras reads KERAS_HOME once, at import.
    code = (
        "from nst_tf.features import FeatureExtractor\n"
        "from nst_tf.errors import WeightsError\n"
        "try:\n"
        "    e = FeatureExtractor(['fire2'], 'squeezenet1_1', weights='imagenet'); print('LOADED', e.min_input_size)\n"
        "except WeightsError as err:\n"
        "    print('ERROR', err)\n"
    )
    empty = tmp_path / "empty_home"
    cached = tmp_path / "cached_home"
    (cached / "models").mkdir(parents=True)
    os.symlink(squeezenet_weights, cached / "models" / squeezenet_weights.name)
    outputs = {}
    for home in (empty, cached):
        env = dict(os.environ, KERAS_HOME=str(home), PYTHONPATH=os.getcwd())
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        outputs[home] = run.stdout
    assert "LOADED" in outputs[cached]
    assert "ERROR" in outputs[empty] and backbones.SQUEEZENET_WEIGHTS_FILE in outputs[empty]
    assert str(empty / "models") in outputs[empty]


def test_get_config_round_trip():
    extractor = FeatureExtractor(["block1_conv2", "block2_conv1"], "vgg16", weights=None, pooling="avg")
    clone = FeatureExtractor.from_config(extractor.get_config())
    assert clone.layer_names == extractor.layer_names and clone.pooling == "avg"
    x = image(32)
    np.testing.assert_allclose(clone(x)["block2_conv1"].numpy(), extractor(x)["block2_conv1"].numpy())
    assert isinstance(keras.saving.get_registered_object("nst_tf>FeatureExtractor"), type)
