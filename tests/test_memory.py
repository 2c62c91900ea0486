"""nst_tf.memory: the step-memory estimate from the architecture, checked before any network exists."""

import pytest

from nst_tf import backbones, memory
from nst_tf.config import StyleConfig
from nst_tf.errors import ConfigError

TINY = dict(backbone="vgg16", weights=None, content_layers=("block2_conv1",),
            style_layers=("block1_conv1", "block2_conv1"), image_size=32)


def keras_elements(name, layers, height, width):
    """Elements of every layer output of the real truncated network, as Keras computes its shapes."""
    import keras

    from nst_tf.features import FeatureExtractor

    network = FeatureExtractor(list(layers), backbone=name, weights=None).network
    probe = keras.Model(network.input, [layer.output for layer in network.layers[1:]])
    total = 0
    for shape in probe.compute_output_shape((1, height, width, 3)):
        count = 1
        for dim in shape:
            count *= int(dim)
        total += count
    return total


@pytest.mark.parametrize("name,layers,tolerance", [
    ("vgg16", ("block2_conv1", "block4_conv3"), 0.0),  # "same" padding: exact.
    ("vgg19", ("block5_conv1",), 0.0),
    ("squeezenet1_1", ("fire3", "fire7"), 0.15),  # "valid" convolutions and pools trim a few pixels.
])
def test_activation_elements_match_the_built_network(name, layers, tolerance):
    analytic = backbones.activation_elements(name, layers, 96, 128)
    built = keras_elements(name, layers, 96, 128)
    assert built <= analytic <= built * (1 + tolerance), (analytic, built)


def test_estimate_grows_with_size_and_precision_lowers_it():
    config = StyleConfig(**TINY)
    small = memory.estimate_step_bytes(config, 64, 64)
    large = memory.estimate_step_bytes(config, 128, 128)
    assert large - memory.BASE_BYTES == pytest.approx(4 * (small - memory.BASE_BYTES))
    assert memory.estimate_step_bytes(config, 128, 128, "bfloat16") < large


def test_check_fits_fails_with_advice_and_passes_below():
    config = StyleConfig(**TINY)
    small = memory.estimate_step_bytes(config, 64, 64)
    memory.check_fits(config, (64, 64), available=small + 1)
    with pytest.raises(ConfigError, match=r"128x128 image needs about .* GiB.*--image-size.*bfloat16"):
        memory.check_fits(config, (128, 128), available=small + 1)


def test_unknown_layer_fails_in_the_estimate():
    with pytest.raises(ConfigError, match="Unknown vgg16 layer 'conv9_9'"):
        memory.check_fits(StyleConfig(**dict(TINY, style_layers=("conv9_9",))), (64, 64), available=2**40)


def test_output_size_keeps_the_aspect():
    assert memory.output_size((400, 300), 200) == (150, 200)
    assert memory.output_size((300, 400), 200) == (200, 150)
    assert memory.output_size((1000, 1), 10) == (1, 10)
