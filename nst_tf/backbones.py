"""Pretrained CNN backbones for perceptual features: VGG19, VGG16 and SqueezeNet v1.1.

A backbone is a functional Keras model from preprocessed BGR input to its last
layer.  Layer names follow Keras (``block4_conv2``, ``fire5``) and each named
layer's output is post-ReLU, so it is a feature map as the papers use them.
All three networks were trained on Caffe-preprocessed input (BGR, ImageNet mean
subtracted, no scaling), done by :func:`preprocess_caffe`.

Weights are ``"imagenet"`` (the Keras cache ``$KERAS_HOME/models/``, downloaded
on first use), a path to a weights file, or ``None`` (random, seeded, for tests
and compute benchmarks).

The registry (layer names, defaults, geometry) is plain data: reading it, as the
command line does to check flags, does not import TensorFlow. Keras is imported by
the functions that build or run a network.
"""

import contextlib
import dataclasses
import io
import os
from typing import Callable, Tuple

import numpy as np

from nst_tf.errors import ConfigError, WeightsError

# Caffe ImageNet mean of the B, G, R channels (Simonyan and Zisserman 2015).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

SQUEEZENET_WEIGHTS_FILE = "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"
SQUEEZENET_WEIGHTS_URL = (
    "https://github.com/rcmalli/keras-squeezenet/releases/download/v1.0/" + SQUEEZENET_WEIGHTS_FILE
)
SQUEEZENET_WEIGHTS_MD5 = "80b66c92d79d4310e07fb60a297bf0d1"

RANDOM_WEIGHTS_SEED = 0
POOLING_MODES = ("max", "avg")


def preprocess_caffe(images):
    """RGB [0, 255] to the backbones' input: BGR with the ImageNet mean subtracted.

    Keras' own ``imagenet_utils.preprocess_input(mode="caffe")``, the preprocessing the
    Keras VGG weights were trained with (its mean is ``CAFFE_BGR_MEAN``).

    Args:
        images: float tensor ``[B, H, W, 3]``, RGB in [0, 255].

    Returns:
        float32 tensor ``[B, H, W, 3]``, BGR, roughly in [-124, 152].
    """
    import keras
    from keras.applications import imagenet_utils

    return imagenet_utils.preprocess_input(keras.ops.cast(images, "float32"), mode="caffe")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What nst_tf knows about one backbone.

    Attributes:
        name: registry key (``"vgg19"``).
        feature_layers: names of the layers whose outputs can be requested, in depth order.
        content_layers: default content layers (from the literature, see each entry).
        style_layers: default style layers.
        weights_file: file name of the ImageNet weights in the Keras cache.
        build: ``build(weights, pooling, dtype) -> keras.Model`` (weights already resolved).
    """

    name: str
    feature_layers: Tuple[str, ...]
    content_layers: Tuple[str, ...]
    style_layers: Tuple[str, ...]
    weights_file: str
    build: Callable


def _vgg_layers(blocks):
    names = []
    for block, convs in enumerate(blocks, start=1):
        names += [f"block{block}_conv{i}" for i in range(1, convs + 1)] + [f"block{block}_pool"]
    return tuple(names)


def _build_keras_vgg(constructor, weights, pooling, dtype):
    """Keras Applications VGG, rebuilt layer by layer to swap pooling and dtype policy."""
    import keras

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Its "Downloading data from <url>" line; see below.
            application = constructor(include_top=False, weights=weights, input_shape=(None, None, 3))
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - Keras raises bare Exception on fetch failure.
        fname = f"{constructor.__name__.lower()}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        raise _weights_error(constructor.__name__, weights, error, fname) from None
    inputs = keras.Input((None, None, 3), name="input_bgr")
    x = inputs
    for layer in application.layers[1:]:
        config = layer.get_config()
        if dtype is not None:
            config["dtype"] = dtype
        cls = type(layer)
        if pooling == "avg" and isinstance(layer, keras.layers.MaxPooling2D):
            cls = keras.layers.AveragePooling2D  # Gatys 2016 sec. 2: smoother gradients.
        clone = cls.from_config(config)
        x = clone(x)
        clone.set_weights(layer.get_weights())
    return keras.Model(inputs, x, name=application.name)


def _fire(x, index, squeeze, expand, dtype):
    import keras

    prefix = f"fire{index}"
    x = keras.layers.Conv2D(squeeze, 1, activation="relu", name=f"{prefix}_squeeze1x1", dtype=dtype)(x)
    left = keras.layers.Conv2D(expand, 1, activation="relu", name=f"{prefix}_expand1x1", dtype=dtype)(x)
    right = keras.layers.Conv2D(
        expand, 3, padding="same", activation="relu", name=f"{prefix}_expand3x3", dtype=dtype
    )(x)
    return keras.layers.Concatenate(name=prefix, dtype=dtype)([left, right])


def _build_squeezenet(weights, pooling, dtype):
    """SqueezeNet v1.1 (Iandola et al. 2016; v1.1 from the DeepScale release), no classifier."""
    import keras

    pool = keras.layers.AveragePooling2D if pooling == "avg" else keras.layers.MaxPooling2D
    inputs = keras.Input((None, None, 3), name="input_bgr")
    x = keras.layers.Conv2D(64, 3, strides=2, activation="relu", name="conv1", dtype=dtype)(inputs)
    x = pool(3, strides=2, name="pool1", dtype=dtype)(x)
    x = _fire(x, 2, 16, 64, dtype)
    x = _fire(x, 3, 16, 64, dtype)
    x = pool(3, strides=2, name="pool3", dtype=dtype)(x)
    x = _fire(x, 4, 32, 128, dtype)
    x = _fire(x, 5, 32, 128, dtype)
    x = pool(3, strides=2, name="pool5", dtype=dtype)(x)
    for index, squeeze, expand in ((6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256)):
        x = _fire(x, index, squeeze, expand, dtype)
    model = keras.Model(inputs, x, name="squeezenet1_1")
    if weights == "imagenet":
        weights = _keras_cache_file(
            SQUEEZENET_WEIGHTS_FILE, SQUEEZENET_WEIGHTS_URL, SQUEEZENET_WEIGHTS_MD5, "SqueezeNet v1.1"
        )
    if weights is not None:
        _load_squeezenet_h5(model, weights)
    return model


def _load_squeezenet_h5(model, path):
    """Loads the Caffe-converted Keras 2 file (groups ``conv1``, ``fire2/squeeze1x1``, ...)."""
    import h5py  # Keras' own dependency; imported here because only this path needs it.
    import keras

    try:
        with h5py.File(path, "r") as h5:
            for layer in model.layers:
                if not isinstance(layer, keras.layers.Conv2D):
                    continue
                group = h5[layer.name.replace("_", "/", 1)]
                arrays = []
                group.visit(lambda key: arrays.append(group[key][()]) if isinstance(group[key], h5py.Dataset) else None)
                kernel = next(a for a in arrays if a.ndim == 4)
                bias = next(a for a in arrays if a.ndim == 1)
                layer.set_weights([kernel, bias])
    except (OSError, KeyError, StopIteration, ValueError) as error:
        raise WeightsError(
            f"Weights file is not SqueezeNet v1.1 Keras weights ({type(error).__name__}: {error}). "
            f"Received: weights={path!r}. Pass the file {SQUEEZENET_WEIGHTS_FILE}."
        ) from None


def _keras_cache_file(fname, origin, md5, label):
    import keras

    try:
        # get_file prints "Downloading data from <url>" before it tries; offline, that line would
        # precede the one-line error.
        with contextlib.redirect_stdout(io.StringIO()):
            return keras.utils.get_file(fname, origin, file_hash=md5, cache_subdir="models")
    except Exception as error:  # noqa: BLE001 - get_file raises bare Exception offline.
        raise _weights_error(label, "imagenet", error, fname) from None


def _cause(error, limit=160):
    """The innermost reason of a download error (``[Errno -2] Name or service not known``),
    without the URL, shortened at a word boundary."""
    text = " ".join(str(error).split()).rsplit(" -- ", 1)[-1]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _weights_error(label, weights, error, fname=None):
    if weights == "imagenet":
        cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
        return WeightsError(
            f"{label} ImageNet weights are not in the Keras cache, and downloading them failed "
            f"(no network access? {_cause(error)}). Put {fname} in {cache}/ (or set KERAS_HOME), "
            f"pass a weights file path, or use --backbone squeezenet1_1 with its weights file "
            f"{SQUEEZENET_WEIGHTS_FILE}. Received: weights='imagenet'."
        )
    hint = ""
    if label != "SqueezeNet v1.1" and "squeezenet" in os.path.basename(str(weights)).lower():
        hint = " These look like SqueezeNet weights: add --backbone squeezenet1_1."
    return WeightsError(
        f"Weights file does not fit {label} ({type(error).__name__}: {str(error)[:200]}).{hint} "
        f"Received: weights={weights!r}."
    )


def _application(name):
    import keras

    return getattr(keras.applications, name)


_VGG_CONTENT = ("block4_conv2",)  # Gatys 2016 sec. 3 ("conv4_2").
_VGG_STYLE = tuple(f"block{i}_conv1" for i in range(1, 6))  # Gatys 2016 ("conv1_1" .. "conv5_1").
_SQUEEZE_LAYERS = ("conv1", "pool1", "fire2", "fire3", "pool3", "fire4", "fire5", "pool5") + tuple(
    f"fire{i}" for i in range(6, 10)
)

BACKBONES = {
    "vgg19": BackboneSpec(
        "vgg19",
        _vgg_layers((2, 2, 4, 4, 4)),
        _VGG_CONTENT,
        _VGG_STYLE,
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        lambda weights, pooling, dtype: _build_keras_vgg(_application("VGG19"), weights, pooling, dtype),
    ),
    "vgg16": BackboneSpec(
        "vgg16",
        _vgg_layers((2, 2, 3, 3, 3)),
        _VGG_CONTENT,
        _VGG_STYLE,
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        lambda weights, pooling, dtype: _build_keras_vgg(_application("VGG16"), weights, pooling, dtype),
    ),
    # Layer choice follows the SqueezeNet style transfer of Stanford CS231n (assignment 3):
    # content from an early fire module, style from conv1 and the first fire modules.
    "squeezenet1_1": BackboneSpec(
        "squeezenet1_1",
        _SQUEEZE_LAYERS,
        ("fire3",),
        ("conv1", "fire2", "fire3", "fire5", "fire7"),
        SQUEEZENET_WEIGHTS_FILE,
        _build_squeezenet,
    ),
}


def _vgg_geometry(blocks):
    """``(layer, channels, stride)`` of every VGG layer; pooling halves the resolution."""
    rows = []
    for block, (convs, channels) in enumerate(zip(blocks, (64, 128, 256, 512, 512)), start=1):
        stride = 2 ** (block - 1)
        rows += [(f"block{block}_conv{i}", channels, stride) for i in range(1, convs + 1)]
        rows.append((f"block{block}_pool", channels, stride * 2))
    return tuple(rows)


def _squeezenet_geometry():
    """``(layer, channels, stride)``; a fire module's row counts its squeeze, both expands and the concat."""
    fires = {2: (16, 64, 4), 3: (16, 64, 4), 4: (32, 128, 8), 5: (32, 128, 8), 6: (48, 192, 16),
             7: (48, 192, 16), 8: (64, 256, 16), 9: (64, 256, 16)}
    rows = [("conv1", 64, 2), ("pool1", 64, 4)]
    for index, (squeeze, expand, stride) in fires.items():
        rows.append((f"fire{index}", squeeze + 4 * expand, stride))
        if index in (3, 5):
            rows.append((f"pool{index}", 2 * expand, stride * 2))
    return tuple(rows)


_GEOMETRY = {
    "vgg19": _vgg_geometry((2, 2, 4, 4, 4)),
    "vgg16": _vgg_geometry((2, 2, 3, 3, 3)),
    "squeezenet1_1": _squeezenet_geometry(),
}


def activation_elements(name, layers, height, width):
    """Activation elements of the backbone truncated at the deepest of ``layers``, for one image.

    Computed from the architecture, without building it, so a size can be checked before
    TensorFlow is imported. Ignores the few pixels "valid" padding trims (an upper bound).

    Args:
        name: str. Backbone name.
        layers: iterable of layer names; the deepest one ends the network.
        height, width: int. Input size, pixels.

    Returns:
        int, the summed element count of every layer's output.

    Raises:
        ConfigError: unknown backbone or layer.
    """
    get_spec(name)
    rows = _GEOMETRY[name]
    names = [row[0] for row in rows]
    unknown = [layer for layer in layers if layer not in names]
    if unknown:
        raise ConfigError(f"Unknown {name} layer {unknown[0]!r}; valid layers: "
                          f"{', '.join(get_spec(name).feature_layers)}. Received: layers={list(layers)}")
    deepest = max(names.index(layer) for layer in layers)
    return sum(channels * -(-height // stride) * -(-width // stride) for _, channels, stride in rows[:deepest + 1])


def get_spec(name):
    """Returns the :class:`BackboneSpec` of ``name``.

    Raises:
        ConfigError: unknown backbone.
    """
    if name not in BACKBONES:
        raise ConfigError(f"Unknown backbone. Choose one of {', '.join(BACKBONES)}. Received: backbone={name!r}")
    return BACKBONES[name]


def _randomize(model, seed):
    """Deterministic Glorot-uniform kernels and zero biases, independent of Keras' global seed."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:3])
            fan_out = kernel.shape[0] * kernel.shape[1] * kernel.shape[3]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            layer.set_weights([rng.uniform(-limit, limit, kernel.shape).astype("float32"), np.zeros_like(bias)])


def build_backbone(name="vgg19", weights="imagenet", pooling="max", dtype=None):
    """Builds a backbone up to its last layer.

    Args:
        name: str. One of ``BACKBONES``. Defaults to ``"vgg19"``.
        weights: ``"imagenet"``, a path to a weights file, or ``None`` (random
            weights, always the same: seeded with ``RANDOM_WEIGHTS_SEED``).
        pooling: str. ``"max"`` or ``"avg"`` (Gatys 2016 prefers average pooling).
        dtype: optional Keras dtype policy name (``"mixed_bfloat16"``).

    Returns:
        A functional ``keras.Model`` from BGR mean-subtracted ``[B, H, W, 3]`` float32
        to the last layer's features.

    Raises:
        ConfigError: unknown backbone or pooling mode.
        WeightsError: weights missing offline, file missing, or of another architecture.
    """
    spec = get_spec(name)
    if pooling not in POOLING_MODES:
        raise ConfigError(f"Unknown pooling mode. Choose 'max' or 'avg'. Received: pooling={pooling!r}")
    if weights not in ("imagenet", None):
        weights = os.fspath(weights)
        if not os.path.isfile(weights):
            raise WeightsError(
                f"Weights file not found. Pass an existing file, 'imagenet' or 'none'. Received: weights={weights!r}"
            )
    model = spec.build(weights, pooling, dtype)
    if weights is None:
        _randomize(model, RANDOM_WEIGHTS_SEED)
    return model
