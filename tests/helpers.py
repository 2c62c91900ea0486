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
START_UP_NOISE = ("oneDNN", "cudart_stub", "absl::InitializeLog", "cuInit", "cpu_feature_guard")
"""Words of TensorFlow's native start-up lines, which the commands keep off the terminal."""

# A tiny optimization problem: a smooth 24x32 "photo", two 28x28 styles (noise, flat green) and
# a VGG16 with random weights truncated at block2 (seconds on a CPU).
_Y, _X = np.mgrid[0:24, 0:32]
CTRL_CONTENT = np.stack([_X * 6.0 + 40, _Y * 7.0 + 30, np.full_like(_X, 110.0)], -1)[None].astype("float32")
CTRL_STYLE = np.random.default_rng(5).uniform(0, 255, (1, 28, 28, 3)).astype("float32")
CTRL_STYLE_B = np.full((1, 28, 28, 3), (30.0, 200.0, 60.0), np.float32)
CTRL_TINY = dict(backbone="vgg16", weights=None, content_layers=("block2_conv1",),
                 style_layers=("block1_conv1", "block2_conv1"), style_weight=1.0, tv_weight=1e-2, image_size=32)


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


def write_mask(path, left=0, right=255, size=(32, 24)):
    """A two-region mask image (left half `left`, right half `right` grey), size (width, height)."""
    mask = np.full(size[::-1], left, np.uint8)
    mask[:, size[0] // 2:] = right
    Image.fromarray(mask).save(path)
    return path


def mask_and_scales_args(tmp_path):
    """Flags of a tiny two-region, two-scale L-BFGS run on files written to `tmp_path`; returns
    ``(args, output path, second style path)``."""
    content = tmp_path / "c.png"
    Image.fromarray(CTRL_CONTENT[0].astype(np.uint8)).save(content)
    style_a, style_b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(CTRL_STYLE[0].astype(np.uint8)).save(style_a)
    Image.fromarray(CTRL_STYLE_B[0].astype(np.uint8)).save(style_b)
    out = tmp_path / "o.png"
    args = ["--content", str(content), "--style", str(style_a), str(style_b), "--output", str(out),
            "--mask", str(write_mask(tmp_path / "m.png")), "--backbone", "vgg16", "--weights", "none",
            "--content-layers", "block2_conv1", "--style-layers", "block1_conv1", "--scales", "16,32",
            "--iterations", "2", "--optimizer", "lbfgs", "--no-progress"]
    return args, out, style_b


def noise_images(height, width, batch=1, seed=0):
    """Float32 ``[batch, height, width, 3]`` uniform noise in [0, 255]."""
    return (np.random.default_rng(seed).random((batch, height, width, 3)) * 255).astype("float32")


def smooth_image(height, width):
    """Float32 ``[1, height, width, 3]`` smooth waves in [0, 255]: a "photo" without noise."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([np.sin(7 * x) * np.cos(5 * y), np.cos(3 * x + 2 * y), x * y], -1)
    return ((image + 1) * 127.5).clip(0, 255)[None].astype("float32")


def single_style_with_blend(multi, weights):
    """The single-style TransformerNet whose gamma and beta are `weights` times `multi`'s tables."""
    from nst_tf.transformer import TransformerNet

    single = TransformerNet.from_config({**multi.get_config(), "style_names": None})
    single.build((None, None, None, 3))
    for target, source in zip(single.weights, multi.weights, strict=True):
        value = source.numpy()
        target.assign(np.asarray(weights, "float32") @ value if value.ndim == 2 and target.shape.rank == 1
                      else value)
    return single


SMALL = {"filters": (8, 16, 16), "num_residual_blocks": 1}
"""TransformerNet arguments of the tests' small network: the same architecture, 1/8 of the channels."""
