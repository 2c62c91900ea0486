"""nst_tf.memory: the step-memory estimate from the architecture, checked before any network exists."""

import json
import re
import zipfile

import pytest

from helpers import ROOT  # noqa: I001
from nst_tf import backbones, files, memory
from nst_tf.config import StyleConfig, TrainConfig
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


# --- trained networks: applying one and training one ---

SHIPPED = ROOT / "saved_models" / "styles" / "styles.keras"


def keras_file(path, **config):
    """A .keras-shaped zip holding only the config.json of a TransformerNet (what the estimate reads)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "TransformerNet", "config": config}))
    return path


def test_architecture_is_read_from_the_keras_file_without_tensorflow(tmp_path):
    def architecture(path):
        return memory.transformer_architecture(files.keras_model_config(path))

    path = keras_file(tmp_path / "net.keras", filters=[16, 32, 64], num_residual_blocks=3, width_multiplier=2.0)
    assert architecture(path) == ((16, 32, 64), 3, 2.0)
    if SHIPPED.is_file():
        assert architecture(SHIPPED) == ((32, 64, 128), 5, 0.5)
    # Nothing readable (a SavedModel folder, a corrupt file): the default full-width network.
    (tmp_path / "bad.keras").write_bytes(b"x")
    for path in (tmp_path, tmp_path / "bad.keras"):
        assert architecture(path) == memory.DEFAULT_ARCHITECTURE


def test_stylize_estimate_grows_with_pixels_width_and_batch_and_tiles_bound_it():
    half = ((32, 64, 128), 5, 0.5)
    full = memory.DEFAULT_ARCHITECTURE
    one = memory.estimate_stylize_bytes(1000, 2000, 1, full) - memory.BASE_BYTES
    assert memory.estimate_stylize_bytes(2000, 4000, 1, full) - memory.BASE_BYTES == pytest.approx(4 * one)
    assert memory.estimate_stylize_bytes(1000, 2000, 3, full) - memory.BASE_BYTES == pytest.approx(3 * one)
    assert memory.estimate_stylize_bytes(1000, 2000, 1, half) - memory.BASE_BYTES < 0.6 * one
    # Tiles bound the network's share; the image-sized buffers remain.
    tiled = memory.estimate_stylize_bytes(8000, 8000, 1, full, tile=512)
    assert tiled < memory.estimate_stylize_bytes(8000, 8000, 1, full) / 4
    assert tiled > memory.BASE_BYTES + 8000 * 8000 * memory.TILED_BYTES_PER_PIXEL
    # An image no larger than the tile runs whole, as stylize --model runs it.
    assert memory.estimate_stylize_bytes(400, 300, 1, full, tile=512) == memory.estimate_stylize_bytes(400, 300, 1, full)


def test_check_stylize_fits_suggests_tiles_for_a_keras_file_only(tmp_path):
    net = keras_file(tmp_path / "net.keras", width_multiplier=1.0)
    huge = [(20000, 13000)]
    tiled = memory.estimate_stylize_bytes(13000, 20000, 1, memory.DEFAULT_ARCHITECTURE, 1024)
    with pytest.raises(ConfigError, match=r"20000x13000 image needs about .* GiB.*--tile 1024.*--image-size"):
        memory.check_stylize_fits(net, huge, available=tiled + 1)
    with pytest.raises(ConfigError, match=r"Use a smaller --image-size \(at most about (\d+) px here\)\. Received") as info:
        memory.check_stylize_fits(tmp_path, huge, available=tiled + 1)  # A SavedModel folder cannot tile.
    # The size named fits, one more pixel does not.
    side = int(re.search(r"at most about (\d+) px", str(info.value)).group(1))
    memory.check_stylize_fits(tmp_path, huge, longest=side, available=tiled + 1)
    with pytest.raises(ConfigError):
        memory.check_stylize_fits(tmp_path, huge, longest=side + 1, available=tiled + 1)
    with pytest.raises(ConfigError, match=r"tiles bound the network's memory"):
        memory.check_stylize_fits(net, huge, tile=1024, available=tiled - 1)
    memory.check_stylize_fits(net, huge, tile=1024, available=tiled + 1)


def test_check_stylize_fits_resizes_and_batches_like_the_command(tmp_path):
    net = keras_file(tmp_path / "net.keras", width_multiplier=1.0)
    one = memory.estimate_stylize_bytes(750, 1000, 1, memory.DEFAULT_ARCHITECTURE)
    two = memory.estimate_stylize_bytes(750, 1000, 2, memory.DEFAULT_ARCHITECTURE)
    memory.check_stylize_fits(net, [(400, 300)], longest=1000, batch_size=4, available=one + 1)
    # Two photos of one size share a batch; different sizes do not.
    with pytest.raises(ConfigError, match=r"1000x750 image.*--batch-size 1"):
        memory.check_stylize_fits(net, [(400, 300), (800, 600)], longest=1000, batch_size=4, available=one + 1)
    memory.check_stylize_fits(net, [(400, 300), (300, 400)], longest=1000, batch_size=4, available=one + 1)
    memory.check_stylize_fits(net, [(400, 300), (800, 600)], longest=1000, batch_size=4, available=two + 1)
    with pytest.raises(ConfigError, match=r"2000x1500 image"):  # Without --image-size: the photo's own size.
        memory.check_stylize_fits(net, [(2000, 1500)], available=one + 1)


def test_train_estimate_counts_the_loss_network_and_precision():
    base = dict(style="s.png", data="d", output="o.keras")
    default = memory.estimate_train_bytes(TrainConfig(**base))
    assert memory.estimate_train_bytes(TrainConfig(**base, mixed_precision=True)) < default
    assert memory.estimate_train_bytes(TrainConfig(**base, loss_network="squeezenet1_1")) < default
    assert memory.estimate_train_bytes(TrainConfig(**base, objective="pixel", targets="t")) < default
    assert memory.estimate_train_bytes(TrainConfig(**base, width_multiplier=0.5)) < default
    double = memory.estimate_train_bytes(TrainConfig(**base, batch_size=8))
    assert double - memory.TRAIN_BASE_BYTES == pytest.approx(2 * (default - memory.TRAIN_BASE_BYTES))


def test_transformer_elements_scale_with_area_and_width():
    full, half = memory.DEFAULT_ARCHITECTURE, ((32, 64, 128), 5, 0.5)
    small = memory.transformer_activation_elements(full, 128, 128)
    assert memory.transformer_activation_elements(full, 256, 256) == 4 * small
    assert 0.45 * small < memory.transformer_activation_elements(half, 128, 128) < 0.55 * small
    assert memory.transformer_activation_elements(((32, 64, 128), 0, 1.0), 128, 128) < small


def test_check_train_fits_fails_with_advice_and_reads_the_init_model(tmp_path):
    base = dict(style="s.png", data="d", output="o.keras", image_size=512)
    config = TrainConfig(**base)
    needed = memory.estimate_train_bytes(config)
    memory.check_train_fits(config, available=needed + 1)
    with pytest.raises(ConfigError, match=r"4 crops of 512x512 needs about .* GiB.*--image-size \(at most about "
                                          r"511 px here\) or --batch-size, or --mixed-precision"):
        memory.check_train_fits(config, available=needed - 1)
    narrow = keras_file(tmp_path / "narrow.keras", width_multiplier=0.25)
    memory.check_train_fits(TrainConfig(**base, init_model=str(narrow)), available=needed - 1)
