"""Helpers shared by the test modules: paths, tiny generated images, a seeded TransformerNet.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``); the
fixtures built on them live in ``conftest.py``.
"""

import os
import pathlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASSETS = pathlib.Path(os.environ.get("NST_TF_ASSETS") or ROOT.parent / "shared" / "assets")
SQUEEZENET_WEIGHTS = ASSETS / "weights" / "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"


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
