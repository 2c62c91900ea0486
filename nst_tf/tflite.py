"""TFLite export of fast style networks, for phones and small devices.

:func:`export_tflite` converts a :class:`~nst_tf.transformer.TransformerNet` into one
``.tflite`` flatbuffer that holds only TFLite builtin ops (no TF Select / Flex ops,
so the stock TFLite or LiteRT runtime on Android, iOS or a microcontroller-class
Linux board runs it).

The model's signature ``serving_default``:

* input ``images``: float32 ``[1, height, width, 3]``, RGB in [0, 255] (the library's
  pixel contract); height and width are **dynamic**: set them at run time with
  ``interpreter.resize_tensor_input`` (or a signature runner, which resizes by itself)
  to any size of at least ``MIN_INPUT_SIZE`` pixels, multiple of 4 or not;
* input ``style_weights`` (multi-style networks only): float32 ``[1, N]`` blend
  weights over the network's styles, used as given (one-hot selects a style; rows
  that sum to one blend them, Dumoulin et al. 2017);
* output ``stylized_images``: float32 ``[1, height, width, 3]`` in [0, 255].

The graph is the Keras model's own call (``TransformerNet.call``), traced with a batch
of one; the network states its channel counts where TensorFlow's shape inference loses
them (:func:`nst_tf.layers.with_static_channels`), so that every convolution becomes
the builtin ``CONV_2D``.  Variables are frozen into constants.

Quantization (:data:`QUANTIZATIONS`): ``float32`` (none), ``float16`` (weights stored
as float16, computed in float32 or float16 where the delegate chooses), ``int8``
(dynamic-range quantization: weight tensors of 1024 or more elements stored as int8,
activations quantized on the fly; smaller tensors stay float32).  Sources: TensorFlow
Lite "Post-training quantization" guide
(https://www.tensorflow.org/lite/performance/post_training_quantization).
"""

import dataclasses
import pathlib
import time

import numpy as np
import tensorflow as tf

from nst_tf import files
from nst_tf.errors import ConfigError, WeightsError

QUANTIZATIONS = ("float32", "float16", "int8")
"""Weight encodings :func:`convert` offers; ``int8`` is dynamic-range quantization."""
SIGNATURE = "serving_default"
"""Name of the TFLite model's signature."""
INPUT_IMAGES = "images"
"""Input: float32 ``[1, H, W, 3]`` RGB in [0, 255]; H and W resizable at run time."""
INPUT_STYLE_WEIGHTS = "style_weights"
"""Input of multi-style networks: float32 ``[1, N]`` blend weights."""
OUTPUT_IMAGES = "stylized_images"
"""Output: float32 ``[1, H, W, 3]`` RGB in [0, 255]."""
MIN_INPUT_SIZE = 4
"""Smallest height or width, pixels (``nst_tf.transformer.MIN_INPUT_SIZE``)."""


@dataclasses.dataclass(frozen=True)
class TFLiteResult:
    """What :func:`export_tflite` wrote.

    Attributes:
        path: pathlib.Path. The ``.tflite`` file.
        size_bytes: int. Its size.
        quantization: str. One of :data:`QUANTIZATIONS`.
        style_names: list of str or None. A multi-style network's styles, in the order
            of the ``style_weights`` input.
        seconds: float. Wall time of the conversion and write.
    """

    path: pathlib.Path
    size_bytes: int
    quantization: str
    style_names: object
    seconds: float


def check_quantization(quantization):
    """Returns `quantization` if it is one of :data:`QUANTIZATIONS`.

    Raises:
        ConfigError: any other value.
    """
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"Unknown TFLite quantization; use one of {', '.join(QUANTIZATIONS)}. "
                          f"Received: quantization={quantization!r}")
    return quantization


def _float32_model(model):
    from nst_tf.stylizer import load_transformer
    from nst_tf.transformer import TransformerNet, with_dtype_policy

    if not isinstance(model, TransformerNet):
        if isinstance(model, (str, pathlib.Path)):
            return load_transformer(model, dtype="float32")
        raise ConfigError(f"TFLite export needs an nst_tf TransformerNet or the path of its .keras file. "
                          f"Received: model of type {type(model).__name__}")
    return with_dtype_policy(model, "float32")  # TFLite kernels have no bfloat16.


def convert(model, quantization="float32"):
    """Converts a TransformerNet to a TFLite flatbuffer with builtin ops only.

    Args:
        model: TransformerNet (any dtype policy; converted in float32) or the path of a
            ``.keras`` file of one.
        quantization: str. One of :data:`QUANTIZATIONS`. Defaults to ``"float32"``.

    Returns:
        bytes, the ``.tflite`` model (signature described in the module docstring).

    Raises:
        ConfigError: a bad `quantization` or a model that is not a TransformerNet.
        WeightsError: an unreadable ``.keras`` file, or a network the converter refuses.
    """
    check_quantization(quantization)
    model = _float32_model(model)
    probe = tf.zeros([1, 16, 16, 3])
    images = tf.TensorSpec([1, None, None, 3], tf.float32, name=INPUT_IMAGES)
    if model.num_styles:
        model(probe, style=tf.one_hot([0], model.num_styles))  # Builds the variables before tracing.
        weights = tf.TensorSpec([1, model.num_styles], tf.float32, name=INPUT_STYLE_WEIGHTS)
        function = tf.function(lambda images, style_weights: {OUTPUT_IMAGES: model(images, style=style_weights)},
                               input_signature=[images, weights])
    else:
        model(probe)
        function = tf.function(lambda images: {OUTPUT_IMAGES: model(images)}, input_signature=[images])
    # Variables frozen into constants first: left as resource variables, the converted model reads
    # some of them uninitialized (READ_VARIABLE fails, or NaN with XNNPACK). An empty trackable keeps
    # the converter on its current path, which writes the signature.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    # Freezing flattens the outputs to "output_0"; a wrapper names the output again.
    named = tf.function(lambda *inputs: {OUTPUT_IMAGES: tf.nest.flatten(frozen(*inputs))[0]},
                        input_signature=function.input_signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([named.get_concrete_function()], tf.Module())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # No representative data: dynamic range.
    try:
        return converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter raises several kinds.
        detail = " ".join(str(error).split())[:200]
        raise WeightsError(f"The TFLite converter refused the network ({type(error).__name__}: {detail}). "
                           f"Received: quantization={quantization!r}") from None


def export_tflite(model, path, quantization="float32"):
    """Writes a TransformerNet as one ``.tflite`` file, atomically.

    Args:
        model: TransformerNet or the path of its ``.keras`` file.
        path: str or path-like. The output file; must end in ``.tflite`` and must not be
            the model file. Parent folders are created; an existing file is replaced
            only once the new one is complete.
        quantization: str. One of :data:`QUANTIZATIONS`. Defaults to ``"float32"``.

    Returns:
        TFLiteResult.

    Raises:
        ConfigError: bad `quantization`, a path without ``.tflite`` or one that is the
            input model.
        WeightsError: see :func:`convert`; or the file cannot be written.
    """
    start = time.perf_counter()
    check_quantization(quantization)
    path = pathlib.Path(path)
    if path.suffix != ".tflite":
        raise ConfigError(f"The TFLite output must be a .tflite file. Received: output='{path}'")
    if path.is_dir():
        raise ConfigError(f"The TFLite output is a folder; give a file name ending in .tflite. Received: output='{path}'")
    if isinstance(model, (str, pathlib.Path)):
        files.check_outputs_spare_inputs([path], [model])
    model = _float32_model(model)
    flatbuffer = convert(model, quantization)
    try:
        with files.atomic_path(path) as temp:
            temp.write_bytes(flatbuffer)
    except OSError as error:
        raise WeightsError(f"Cannot write the TFLite model ({error.strerror or error}). "
                           f"Received: output='{path}'") from None
    return TFLiteResult(path, len(flatbuffer), quantization, None if model.style_names is None else list(
        model.style_names), time.perf_counter() - start)


def load_interpreter(model, num_threads=None):
    """A ``tf.lite.Interpreter`` of a ``.tflite`` file or flatbuffer bytes.

    Args:
        model: str or path-like (a ``.tflite`` file) or bytes.
        num_threads: int or None. CPU threads; None is the runtime's default.

    Returns:
        tf.lite.Interpreter.

    Raises:
        WeightsError: a missing or unreadable file.
    """
    try:
        if isinstance(model, (bytes, bytearray)):
            return tf.lite.Interpreter(model_content=bytes(model), num_threads=num_threads)
        if not pathlib.Path(model).is_file():
            raise WeightsError(f"TFLite model file not found. Received: path='{model}'")
        return tf.lite.Interpreter(model_path=str(model), num_threads=num_threads)
    except ValueError as error:
        raise WeightsError(f"Not a TFLite model ({' '.join(str(error).split())[:200]}). "
                           f"Received: {type(model).__name__}") from None


def stylize(interpreter, image, style_weights=None):
    """Runs a TFLite style network on one image of any size.

    Args:
        interpreter: tf.lite.Interpreter from :func:`load_interpreter`.
        image: float array ``[H, W, 3]`` or ``[1, H, W, 3]``, RGB in [0, 255]; sides >=
            ``MIN_INPUT_SIZE``.
        style_weights: multi-style models only: float array ``[N]`` or ``[1, N]``.

    Returns:
        np.ndarray float32 ``[1, H, W, 3]`` in [0, 255].

    Raises:
        ConfigError: an image of the wrong rank or too small, or style weights given to
            a single-style model or missing for a multi-style one.
    """
    image = np.asarray(image, np.float32)
    image = image[None] if image.ndim == 3 else image
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[-1] != 3 or min(image.shape[1:3]) < MIN_INPUT_SIZE:
        raise ConfigError(f"A TFLite style model takes one RGB image [1, H, W, 3] with sides >= {MIN_INPUT_SIZE}. "
                          f"Received: shape={image.shape}")
    runner = interpreter.get_signature_runner(SIGNATURE)
    takes_style = INPUT_STYLE_WEIGHTS in runner.get_input_details()
    if takes_style != (style_weights is not None):
        raise ConfigError(f"style_weights must be given exactly for multi-style models. Received: "
                          f"style_weights={'None' if style_weights is None else 'given'}, model "
                          f"{'multi-style' if takes_style else 'single-style'}")
    inputs = {INPUT_IMAGES: image}
    if takes_style:
        inputs[INPUT_STYLE_WEIGHTS] = np.asarray(style_weights, np.float32).reshape(1, -1)
    return runner(**inputs)[OUTPUT_IMAGES]
