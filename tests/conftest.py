"""Shared fixtures: tiny generated images and the fetched assets in ../shared/assets."""

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSETS = ROOT.parent / "shared" / "assets"
SQUEEZENET_WEIGHTS = ASSETS / "weights" / "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"


@pytest.fixture
def squeezenet_weights():
    """Path of the SqueezeNet v1.1 ImageNet weights; skips the test when they are absent."""
    if not SQUEEZENET_WEIGHTS.is_file():
        pytest.skip(f"SqueezeNet ImageNet weights not found at {SQUEEZENET_WEIGHTS} (../shared/assets is absent)")
    return SQUEEZENET_WEIGHTS


@pytest.fixture
def asset():
    """``asset('images/content/tubingen.jpg')`` -> path under ../shared/assets, or skip."""

    def get(relative):
        path = ASSETS / relative
        if not path.is_file():
            pytest.skip(f"asset {relative} not found under {ASSETS}")
        return path

    return get


def write_image(path, size=(40, 32), seed=0, pattern="noise"):
    """Writes a small RGB image (width, height) and returns its path."""
    rng = np.random.default_rng(seed)
    width, height = size
    if pattern == "noise":
        array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:  # smooth gradient with a few shapes: a "photo".
        y, x = np.mgrid[0:height, 0:width]
        array = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                          np.full_like(x, 90)], -1).astype(np.uint8)
        array[height // 4: height // 2, width // 4: width // 2] = (220, 40, 40)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def photo(tmp_path):
    return write_image(tmp_path / "photo.png", (40, 32), pattern="photo")


@pytest.fixture
def painting(tmp_path):
    return write_image(tmp_path / "painting.png", (36, 36), seed=1)


def random_transformer(seed=0, random_biases=True, **kwargs):
    """A built TransformerNet with seeded random weights.

    ``random_biases``: also draw biases, betas and gammas, whose Keras initial values (zeros,
    ones) would hide a dropped or misplaced term.
    """
    import keras

    from nst_tf.transformer import TransformerNet

    keras.utils.set_random_seed(seed)
    model = TransformerNet(**kwargs)
    model.build((None, None, None, 3))
    rng = np.random.default_rng(seed)
    for weight in model.weights if random_biases else ():
        if weight.path.endswith(("bias", "beta")):
            weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))
        elif weight.path.endswith("gamma"):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    return model
