"""Shared fixtures: tiny generated images and the fetched assets in ../shared/assets (helpers.py)."""

import os

import pytest

from helpers import ASSETS, SQUEEZENET_WEIGHTS, write_image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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


@pytest.fixture
def photo(tmp_path):
    return write_image(tmp_path / "photo.png", (40, 32), pattern="photo")


@pytest.fixture
def painting(tmp_path):
    return write_image(tmp_path / "painting.png", (36, 36), seed=1)


@pytest.fixture(scope="module")
def net():
    """A built full-width TransformerNet with seeded initial weights."""
    import keras

    from nst_tf.transformer import TransformerNet

    keras.utils.set_random_seed(0)
    model = TransformerNet()
    model.build((None, None, None, 3))
    return model
