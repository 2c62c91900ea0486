"""Export of fast style networks as SavedModels for TensorFlow Serving.

:func:`export_model` writes a :class:`~nst_tf.transformer.TransformerNet` (or any
Keras model with its pixel contract) to ``<base_path>/<version>/`` -- TF Serving's
layout: ``saved_model.pb``, ``variables/``, and the warm-up file
``assets.extra/tf_serving_warmup_requests``.  A new export takes the next version
number and never replaces an existing one: it is written to a hidden temporary
folder next to the versions and renamed into place, so a server polling the base
path never sees half a model (TF Serving ignores folders whose name is not a
number).

Two signatures, one per input type, as in tensorflow/models
``official/vision/serving`` (``image_tensor`` and ``image_bytes``):

* ``serving_default``: ``images`` uint8 ``[batch, height, width, 3]`` RGB ->
  ``stylized_images`` uint8 ``[batch, height, width, 3]``.
* ``stylize_bytes``: ``image_bytes`` string ``[batch]`` (JPEG, PNG, GIF, BMP or
  WebP files) -> ``stylized_image_bytes`` string ``[batch]`` (PNG, or JPEG when exported
  with ``output_format="jpeg"``).  The ``_bytes`` suffix makes TF Serving's REST API
  return the output as ``{"b64": ...}``.  Images of one batch may differ in size.

Both check the image size inside the graph: each side must lie in
``[MIN_IMAGE_SIZE, max_image_size]`` pixels and a batch must hold at least one
image, else the request fails with ``INVALID_ARGUMENT`` before any convolution
runs.  For encoded images the size is read from the PNG, GIF, BMP, WebP or JPEG
header before decoding, so a small file that claims gigapixels is refused without
allocating them, and a file of any other format is refused undecoded.
``stylize_bytes`` decodes with ``tf.io.decode_image``: the first frame of a GIF; alpha composited on white (as :func:`nst_tf.images.load_image`);
EXIF orientation is *not* applied (send pixels through ``serving_default`` when it
matters).

A multi-style network (:class:`~nst_tf.transformer.TransformerNet` with style
names) takes the style next to the images: ``serving_default`` and
``stylize_bytes`` gain a string input ``style`` (one name per image, or one for
the batch); ``stylize_blend`` takes ``images`` and float32 ``style_weights``
``[batch or 1, N]`` (blending in the normalization parameters, Dumoulin et al.
2017); ``style_names`` maps indices to names (see :data:`nst_tf.signatures.MULTI_STYLE_SIGNATURES`).
An unknown name fails the request with ``INVALID_ARGUMENT`` naming the styles.

The SavedModel holds only standard TensorFlow ops and variables: it loads with
``tf.saved_model.load`` or ``tensorflow_model_server`` in a process that never
imports nst_tf.

Sources: TF Serving "SavedModel Warmup" and "RESTful API" guides
(https://www.tensorflow.org/tfx/serving/saved_model_warmup,
https://www.tensorflow.org/tfx/serving/api_rest); tensorflow/serving
``tensorflow_serving/util/json_tensor.cc`` for the ``_bytes`` rule.
"""

import dataclasses
import errno
import os
import pathlib
import re
import shutil
import time
import types
import uuid

import numpy as np
import tensorflow as tf

from nst_tf.config import check_int
from nst_tf.errors import ConfigError, WeightsError
from nst_tf.inference import TransformerInference, round_to_uint8
from nst_tf.signatures import (
    INPUT_BYTES,
    INPUT_IMAGES,
    INPUT_STYLE,
    INPUT_STYLE_INDEX,
    INPUT_STYLE_WEIGHTS,
    OUTPUT_BYTES,
    OUTPUT_IMAGES,
    OUTPUT_STYLE_NAMES,
    SIGNATURE_BLEND,
    SIGNATURE_BYTES,
    SIGNATURE_IMAGES,
    SIGNATURE_STYLE_NAMES,
)
from nst_tf.stylizer import load_transformer
from nst_tf.transformer import TransformerNet

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
"""Warm-up requests, relative to a version folder (TF Serving's fixed location)."""
DEFAULT_MAX_IMAGE_SIZE = 2048
"""Largest side, pixels, the signatures accept by default (a 2048 px TransformerNet pass: ~4.3 GB)."""
MIN_IMAGE_SIZE = 4
"""Smallest side, pixels, the signatures accept (``transformer.MIN_INPUT_SIZE``)."""
OUTPUT_FORMATS = ("png", "jpeg")
"""Encodings ``stylize_bytes`` can return."""
DEFAULT_WARMUP_SIZE = 256
"""Side, pixels, of the square warm-up images."""

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION = re.compile(r"[0-9]+", re.ASCII)
_PNG_MAGIC = (0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        path: pathlib.Path. The version folder, ``<base_path>/<version>``.
        version: int. The version number (the folder's name).
        seconds: float. Wall time of the export.
        signatures: tuple of str. The signatures the version serves.
        style_names: tuple of str, a multi-style network's styles; empty for one style.
    """

    path: pathlib.Path
    version: int
    seconds: float
    signatures: tuple = ()
    style_names: tuple = ()


def check_model_name(name):
    """Checks that `name` is usable as a TF Serving model name and a folder name.

    Args:
        name: str. Letters, digits, ``_``, ``.`` and ``-``; starts with a letter or digit
            (a REST path ``/v1/models/<name>`` cannot hold ``/`` or ``:``).

    Returns:
        str, `name`.

    Raises:
        ConfigError: `name` has other characters or is empty.
    """
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise ConfigError("A model name must start with a letter or digit and contain only letters, digits, "
                          f"'_', '.' and '-'. Received: name={name!r}")
    return name


def list_versions(base_path):
    """Versions present under a TF Serving model base path.

    Args:
        base_path: str or path-like. ``saved_models/<model>``; may be missing.

    Returns:
        list of int, ascending: the names of the sub-folders made of ASCII digits
        (temporary and other folders are ignored, as TF Serving ignores them).
    """
    base_path = pathlib.Path(base_path)
    if not base_path.is_dir():
        return []
    # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses.
    return sorted(int(p.name) for p in base_path.iterdir() if _VERSION.fullmatch(p.name) and p.is_dir())


def next_version(base_path):
    """The version number a new export into `base_path` takes: the highest plus one, or 1.

    Args:
        base_path: str or path-like. ``saved_models/<model>``; may be missing.

    Returns:
        int >= 1.
    """
    versions = list_versions(base_path)
    return versions[-1] + 1 if versions else 1


def _check_sides(height, width, max_image_size, what):
    """An Assert op: both sides in [MIN_IMAGE_SIZE, max_image_size]."""
    ok = tf.logical_and(tf.minimum(height, width) >= MIN_IMAGE_SIZE, tf.maximum(height, width) <= max_image_size)
    return tf.debugging.Assert(ok, [
        f"{what} must have sides of {MIN_IMAGE_SIZE} to {max_image_size} pixels (max_image_size of the export). "
        "Received height, width:", height, width], name="check_image_size")


def _check_batch(batch):
    return tf.debugging.Assert(batch > 0, ["The batch is empty: send at least one image. Received batch size:",
                                           batch], name="check_batch")


def encoded_image_size(data):
    """Height and width from an image file's header, without decoding the pixels.

    Reads PNG (IHDR), GIF (logical screen), BMP (info header), WebP (the ``VP8 ``,
    ``VP8L`` or ``VP8X`` chunk: lossy, lossless and extended files) and JPEG (SOF, via
    ``tf.image.extract_jpeg_shape``) headers: every format ``tf.io.decode_image``
    decodes.  Graph-compatible; standard TF ops.

    Args:
        data: scalar string tensor, the file's bytes.

    Returns:
        (height, width), int64 scalar tensors; ``(0, 0)`` for any other format, which
        the signatures refuse without decoding.

    Raises:
        tf.errors.InvalidArgumentError: at run time, a file that starts like a JPEG but
            has no valid frame header.
    """
    head = tf.io.decode_raw(tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 32)]), 0, 32), tf.uint8)
    b = tf.cast(head, tf.int64)

    def starts_with(magic, at=0):
        return tf.reduce_all(tf.equal(head[at:at + len(magic)], tf.constant(magic, tf.uint8)))

    def be32(i):
        return b[i] * 16777216 + b[i + 1] * 65536 + b[i + 2] * 256 + b[i + 3]

    def le16(i):
        return b[i] + b[i + 1] * 256

    def le24(i):
        return le16(i) + b[i + 2] * 65536

    def le32_abs(i):
        value = le24(i) + b[i + 3] * 16777216
        return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))  # Negative height: top-down BMP.

    # WebP (RIFF container, https://developers.google.com/speed/webp/docs/riff_container): the
    # first chunk at byte 12 gives the size. VP8: 14-bit sides after the key frame's start code
    # 9d 01 2a (RFC 6386 sec. 9.1); VP8L: 14-bit sides minus one after the 0x2f signature;
    # VP8X: the canvas, 24-bit sides minus one.
    webp = tf.logical_and(starts_with(tuple(b"RIFF")), starts_with(tuple(b"WEBP"), 8))
    vp8 = tf.logical_and(starts_with(tuple(b"VP8 "), 12), starts_with((0x9D, 0x01, 0x2A), 23))
    vp8l = tf.logical_and(starts_with(tuple(b"VP8L"), 12), starts_with((0x2F,), 20))
    vp8x = starts_with(tuple(b"VP8X"), 12)
    lossless_bits = le24(21) + b[24] * 16777216
    webp_height = tf.where(vp8, tf.bitwise.bitwise_and(le16(28), 0x3FFF),
                           tf.where(vp8l, tf.bitwise.bitwise_and(tf.bitwise.right_shift(lossless_bits, 14), 0x3FFF) + 1,
                                    tf.where(vp8x, le24(27) + 1, 0)))
    webp_width = tf.where(vp8, tf.bitwise.bitwise_and(le16(26), 0x3FFF),
                          tf.where(vp8l, tf.bitwise.bitwise_and(lossless_bits, 0x3FFF) + 1,
                                   tf.where(vp8x, le24(24) + 1, 0)))

    zero = tf.constant(0, tf.int64)
    height = tf.where(starts_with(_PNG_MAGIC), be32(20),
                      tf.where(starts_with(tuple(b"GIF8")), le16(8),
                               tf.where(starts_with(tuple(b"BM")), le32_abs(22),
                                        tf.where(webp, webp_height, zero))))
    width = tf.where(starts_with(_PNG_MAGIC), be32(16),
                     tf.where(starts_with(tuple(b"GIF8")), le16(6),
                              tf.where(starts_with(tuple(b"BM")), le32_abs(18),
                                       tf.where(webp, webp_width, zero))))
    is_jpeg = starts_with((0xFF, 0xD8, 0xFF))
    jpeg = tf.cond(is_jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
                   lambda: tf.zeros([2], tf.int64))
    return tf.where(is_jpeg, jpeg[0], height), tf.where(is_jpeg, jpeg[1], width)


def decode_rgb(data):
    """Decodes one image file to float32 RGB ``[H, W, 3]`` in [0, 255] with standard TF ops.

    Grey becomes RGB; alpha is composited on white, as :func:`nst_tf.images.load_image`
    does; GIF gives its first frame.  EXIF orientation is not applied.

    Args:
        data: scalar string tensor, a JPEG, PNG, GIF, BMP or WebP file.

    Returns:
        float32 tensor ``[H, W, 3]``.

    Raises:
        tf.errors.InvalidArgumentError: at run time, bytes that are not such a file.
    """
    image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
    channels = tf.shape(image)[-1]
    pixels = tf.cast(image, tf.float32)
    has_alpha = tf.equal(channels % 2, 0)  # 2: grey + alpha, 4: RGB + alpha.
    color = pixels[..., :tf.where(has_alpha, channels - 1, channels)]
    color = tf.cond(tf.equal(tf.shape(color)[-1], 1), lambda: tf.tile(color, [1, 1, 3]), lambda: color)
    alpha = tf.cond(has_alpha, lambda: pixels[..., -1:] / 255.0, lambda: tf.ones_like(pixels[..., :1]))
    return tf.ensure_shape(color * alpha + 255.0 * (1.0 - alpha), [None, None, 3])


class StylizeModule(tf.Module):
    """The serving graph: a Keras style network behind the two signatures.

    A :class:`~nst_tf.transformer.TransformerNet` is served through its compiled
    inference graph (:class:`nst_tf.inference.TransformerInference`: sub-pixel
    upsampling convolutions, blocked head, fused instance normalization; standard
    TensorFlow ops only, no XLA), in the model's compute dtype (``mixed_bfloat16``:
    bfloat16 convolutions); other Keras models through their own call.

    Args:
        model: keras.Model mapping float32 RGB ``[B, H, W, 3]`` in [0, 255] to the same
            shape and range (a :class:`~nst_tf.transformer.TransformerNet`).
        max_image_size: int. Largest height or width, pixels, a request may have.
            Defaults to ``DEFAULT_MAX_IMAGE_SIZE``.
        output_format: str. ``"png"`` or ``"jpeg"``: the encoding ``stylize_bytes``
            returns. Defaults to ``"png"``.
        jpeg_quality: int. 1-100, for ``output_format="jpeg"``. Defaults to 95.

    Raises:
        ConfigError: a bad `max_image_size`, `output_format` or `jpeg_quality`.
    """

    def __init__(self, model, max_image_size=DEFAULT_MAX_IMAGE_SIZE, output_format="png", jpeg_quality=95):
        super().__init__(name="stylize")
        check_int("max_image_size", max_image_size, MIN_IMAGE_SIZE)
        check_int("jpeg_quality", jpeg_quality, 1, 100)
        if output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"`output_format` must be one of {OUTPUT_FORMATS}. "
                              f"Received: output_format={output_format!r}")
        self.network = TransformerInference(model) if isinstance(model, TransformerNet) else None
        if self.network is None:
            self.model = model
        else:  # The inference graph holds its variables; saving the Keras model too would trace its call.
            self._untracked = types.SimpleNamespace(model=model)
        self.max_image_size = int(max_image_size)
        self.output_format = output_format
        self.jpeg_quality = int(jpeg_quality)
        self.style_names = None if self.network is None else self.network.style_names
        if self.style_names is not None:
            names = tf.constant(self.style_names)
            self.style_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(names, tf.range(len(self.style_names), dtype=tf.int32)),
                default_value=-1)
            self.style_name_list = tf.Variable(names, trainable=False, name="style_names")
        self.serving_functions = self._functions()

    def _stylize_images(self, images):
        """uint8 ``[B, H, W, 3]`` -> ``{"stylized_images": uint8 [B, H, W, 3]}``."""
        return {OUTPUT_IMAGES: round_to_uint8(self._forward(self._checked_images(images)))}

    @property
    def keras_model(self):
        """The Keras model this module serves."""
        return self.model if self.network is None else self._untracked.model

    def _forward(self, pixels, style_weights=None):
        """float32 ``[B, H, W, 3]`` in [0, 255] -> the stylized images, same shape and range."""
        if self.network is not None:
            extra = () if style_weights is None else (style_weights,)
            return self.network.stylize(pixels, *extra)[0]
        return self.model(pixels, training=False)

    def _checked_images(self, images):
        # TF Serving feeds tensors without checking them against the signature's shape.
        rank_ok = tf.debugging.Assert(tf.logical_and(tf.equal(tf.rank(images), 4), tf.equal(tf.shape(images)[-1], 3)), [
            "Images must be uint8 [batch, height, width, 3]. Received shape:", tf.shape(images)], name="check_shape")
        with tf.control_dependencies([rank_ok]):
            shape = tf.shape(images)
        checks = [_check_batch(shape[0]), _check_sides(shape[1], shape[2], self.max_image_size, "Images")]
        with tf.control_dependencies(checks):
            return tf.cast(images, tf.float32)

    def _weights_of_names(self, style, batch):
        """string ``[B or 1]`` style names -> float32 one-hot ``[B, N]``; unknown names fail the request."""
        count = tf.shape(style)[0]
        index = self.style_table.lookup(style)
        known = tf.debugging.Assert(tf.reduce_all(index >= 0), [
            f"Unknown style name; this model has: {', '.join(self.style_names)}. Received:", style],
            name="check_style_name", summarize=16)
        counted = tf.debugging.Assert(tf.logical_or(tf.equal(count, 1), tf.equal(count, batch)), [
            "Send one style name per image, or one for all. Received names, images:", count, batch],
            name="check_style_count")
        with tf.control_dependencies([known, counted]):
            weights = tf.one_hot(index, len(self.style_names), dtype=tf.float32)
        return tf.broadcast_to(weights, [batch, len(self.style_names)])

    def stylize_images_by_name(self, images, style):
        """uint8 ``[B, H, W, 3]`` and string ``[B or 1]`` names -> ``{"stylized_images": uint8}``."""
        pixels = self._checked_images(images)
        weights = self._weights_of_names(style, tf.shape(pixels)[0])
        return {OUTPUT_IMAGES: round_to_uint8(self._forward(pixels, weights))}

    def stylize_blend(self, images, style_weights):
        """uint8 ``[B, H, W, 3]`` and float32 ``[B or 1, N]`` weights -> ``{"stylized_images": uint8}``."""
        pixels = self._checked_images(images)
        batch, rows = tf.shape(pixels)[0], tf.shape(style_weights)[0]
        finite = tf.debugging.Assert(tf.logical_and(
            tf.reduce_all(tf.math.is_finite(style_weights)), tf.logical_or(tf.equal(rows, 1), tf.equal(rows, batch))), [
            "style_weights must be finite, one row per image or one for all. Received rows, images:", rows, batch],
            name="check_style_weights")
        with tf.control_dependencies([finite]):
            weights = tf.broadcast_to(style_weights, [batch, len(self.style_names)])
        return {OUTPUT_IMAGES: round_to_uint8(self._forward(pixels, weights))}

    def stylize_bytes_by_name(self, image_bytes, style):
        """string ``[B]`` files and string ``[B or 1]`` names -> ``{"stylized_image_bytes": string [B]}``."""
        with tf.control_dependencies([_check_batch(tf.shape(image_bytes)[0])]):
            image_bytes = tf.identity(image_bytes)
        weights = self._weights_of_names(style, tf.shape(image_bytes)[0])
        encoded = tf.map_fn(lambda item: self._stylize_one(item[0], item[1][None]), (image_bytes, weights),
                            fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)
        return {OUTPUT_BYTES: encoded}

    def names_of_styles(self, style_index):
        """int32 ``[k]`` indices -> ``{"style_names": string [k]}``."""
        count = len(self.style_names)
        ok = tf.debugging.Assert(tf.reduce_all(tf.logical_and(style_index >= 0, style_index < count)), [
            f"style_index must lie in [0, {count}). Received:", style_index], name="check_style_index")
        with tf.control_dependencies([ok]):
            return {OUTPUT_STYLE_NAMES: tf.gather(self.style_name_list, style_index)}

    def _stylize_bytes(self, image_bytes):
        """string ``[B]`` image files -> ``{"stylized_image_bytes": string [B]}`` PNG or JPEG files."""
        with tf.control_dependencies([_check_batch(tf.shape(image_bytes)[0])]):
            image_bytes = tf.identity(image_bytes)
        # One image at a time: sizes may differ, and memory stays that of one image.
        encoded = tf.map_fn(self._stylize_one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string),
                            parallel_iterations=1)
        return {OUTPUT_BYTES: encoded}

    def _stylize_one(self, data, style_weights=None):
        height, width = encoded_image_size(data)
        # Nothing is decoded whose size the header does not bound: decoding is what costs memory and time.
        readable = tf.debugging.Assert(tf.minimum(height, width) > 0, [
            "Unknown image file format, or a header without the image size: send a JPEG, PNG, GIF, BMP or WebP "
            "file. Received a file of this many bytes:", tf.strings.length(data)], name="check_header_format")
        with tf.control_dependencies([readable]):
            declared_ok = tf.maximum(height, width) <= self.max_image_size
        with tf.control_dependencies([tf.debugging.Assert(declared_ok, [
                f"Encoded image is larger than {self.max_image_size} pixels (max_image_size of the export) "
                "according to its header. Received height, width:", height, width], name="check_header_size")]):
            pixels = decode_rgb(data)
        shape = tf.shape(pixels)
        with tf.control_dependencies([_check_sides(shape[0], shape[1], self.max_image_size, "Decoded image")]):
            pixels = tf.identity(pixels)
        stylized = round_to_uint8(self._forward(pixels[None], style_weights))[0]
        if self.output_format == "jpeg":
            return tf.io.encode_jpeg(stylized, quality=self.jpeg_quality)
        return tf.io.encode_png(stylized)

    def _functions(self):
        """``{signature name: tf.function with its input signature}``."""
        images = tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_IMAGES)
        files = tf.TensorSpec([None], tf.string, name=INPUT_BYTES)
        if self.style_names is None:
            return {SIGNATURE_IMAGES: tf.function(self._stylize_images, input_signature=[images]),
                    SIGNATURE_BYTES: tf.function(self._stylize_bytes, input_signature=[files])}
        style = tf.TensorSpec([None], tf.string, name=INPUT_STYLE)
        weights = tf.TensorSpec([None, len(self.style_names)], tf.float32, name=INPUT_STYLE_WEIGHTS)
        return {
            SIGNATURE_IMAGES: tf.function(self.stylize_images_by_name, input_signature=[images, style]),
            SIGNATURE_BYTES: tf.function(self.stylize_bytes_by_name, input_signature=[files, style]),
            SIGNATURE_BLEND: tf.function(self.stylize_blend, input_signature=[images, weights]),
            SIGNATURE_STYLE_NAMES: tf.function(self.names_of_styles, input_signature=[
                tf.TensorSpec([None], tf.int32, name=INPUT_STYLE_INDEX)]),
        }

    def signatures(self):
        """``{signature name: concrete function}`` for ``tf.saved_model.save``."""
        return {name: function.get_concrete_function() for name, function in self.serving_functions.items()}


def warmup_image(size):
    """A deterministic uint8 RGB test card ``[size, size, 3]``: gradients and a square."""
    y, x = np.mgrid[0:size, 0:size]
    image = np.stack([x * 255 // max(size - 1, 1), y * 255 // max(size - 1, 1), np.full_like(x, 96)], -1)
    image[size // 4: size // 2, size // 4: size // 2] = (220, 40, 40)
    return image.astype(np.uint8)


def write_warmup_requests(path, model_name, size=DEFAULT_WARMUP_SIZE, style_names=None):
    """Writes TF Serving warm-up requests: one ``Predict`` per signature on a `size`-pixel image.

    The file is a TFRecord of ``tensorflow.serving.PredictionLog`` protos, which TF
    Serving (``--enable_model_warmup``, on by default) replays when it loads the
    version, so the first real request does not pay for graph optimization and
    kernel set-up.

    Args:
        path: str or path-like. The file, normally ``<version>/`` + ``WARMUP_FILE``.
        model_name: str. Written into the requests' ``model_spec.name``.
        size: int. Side of the square warm-up image, pixels (<= the export's
            ``max_image_size``, or TF Serving fails to load the version).
        style_names: list of str or None. A multi-style network's styles: the requests
            then carry the first style's name (and weights for ``stylize_blend``).

    Returns:
        pathlib.Path of the file.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    image = warmup_image(size)
    png = tf.io.encode_png(image).numpy()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    requests = [(SIGNATURE_IMAGES, {INPUT_IMAGES: tf.make_tensor_proto(image[None])}),
                (SIGNATURE_BYTES, {INPUT_BYTES: tf.make_tensor_proto([png], dtype=tf.string)})]
    if style_names:
        first = tf.make_tensor_proto([style_names[0]], dtype=tf.string)
        for _, inputs in requests:
            inputs[INPUT_STYLE] = first
        weights = np.zeros((1, len(style_names)), np.float32)
        weights[0, 0] = 1.0
        requests.append((SIGNATURE_BLEND, {INPUT_IMAGES: tf.make_tensor_proto(image[None]),
                                           INPUT_STYLE_WEIGHTS: tf.make_tensor_proto(weights)}))
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for name, tensor in inputs.items():
                request.inputs[name].CopyFrom(tensor)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def _check_model(model):
    probe = np.zeros((1, 16, 12, 3), np.float32)
    style = {"style": [0]} if getattr(model, "num_styles", None) else {}
    try:
        shape = tuple(model(probe, training=False, **style).shape)
    except Exception as error:  # noqa: BLE001 - any failure means the model breaks the contract.
        raise ConfigError(f"The model cannot stylize a [1, 16, 12, 3] float32 image ({type(error).__name__}: "
                          f"{' '.join(str(error).split())[:200]}). Export a TransformerNet.") from None
    if shape != probe.shape:
        raise ConfigError(f"The model must map [B, H, W, 3] images to the same shape. Received: output shape "
                          f"{shape} for input shape {probe.shape}")


def export_model(model, base_path, version=None, max_image_size=DEFAULT_MAX_IMAGE_SIZE, output_format="png",
                 jpeg_quality=95, warmup_size=DEFAULT_WARMUP_SIZE, model_name=None):
    """Exports a style network to ``<base_path>/<version>/`` for TensorFlow Serving.

    Writes the SavedModel (signatures ``serving_default`` and ``stylize_bytes``, see
    the module docstring) and the warm-up file into a hidden temporary folder inside
    `base_path`, then renames it to the version number: the version appears whole or
    not at all, and an existing version is never touched.

    Args:
        model: keras.Model (a TransformerNet) or the path of a ``.keras`` file of one.
        base_path: str or path-like. The model base path, ``saved_models/<model>``;
            created if missing.
        version: int or None. Version number to write; None takes
            :func:`next_version`. Defaults to None.
        max_image_size: int. Largest height or width, pixels, the signatures accept.
            Defaults to ``DEFAULT_MAX_IMAGE_SIZE`` (2048).
        output_format: str. ``"png"`` (lossless) or ``"jpeg"``, the files
            ``stylize_bytes`` returns. Defaults to ``"png"``.
        jpeg_quality: int. 1-100, used with ``output_format="jpeg"``. Defaults to 95.
        warmup_size: int. Side, pixels, of the warm-up images (clipped to
            `max_image_size`); 0 writes no warm-up file. Defaults to 256.
        model_name: str or None. Model name written into the warm-up requests;
            None uses the name of `base_path`.

    Returns:
        ExportResult with the version folder and number.

    Raises:
        ConfigError: bad arguments, `version` already present, or a model that does
            not map ``[B, H, W, 3]`` to the same shape.
        WeightsError: the ``.keras`` file is missing or corrupt, or the base path
            cannot be written.
    """
    start = time.perf_counter()
    base_path = pathlib.Path(base_path)
    model_name = check_model_name(base_path.name if model_name is None else model_name)
    if version is not None:
        check_int("version", version, 1)
        if (base_path / str(version)).exists():
            raise ConfigError(f"Version {version} already exists in '{base_path}'; exports never overwrite a version. "
                              f"Omit the version to take the next one ({next_version(base_path)}). "
                              f"Received: version={version}")
    check_int("warmup_size", warmup_size, 0)
    module = StylizeModule(_load(model), max_image_size, output_format, jpeg_quality)
    _check_model(module.keras_model)
    try:
        base_path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsError(f"Cannot create the model base path ({error.strerror or error}). "
                           f"Received: base_path='{base_path}'") from None
    temp = base_path / f".export-{uuid.uuid4().hex[:12]}.tmp"
    try:
        tf.saved_model.save(module, str(temp), signatures=module.signatures())
        if warmup_size:
            write_warmup_requests(temp / WARMUP_FILE, model_name, min(warmup_size, module.max_image_size),
                                  module.style_names)
        version = _publish(temp, base_path, version)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return ExportResult(base_path / str(version), version, time.perf_counter() - start,
                        tuple(module.serving_functions), tuple(module.style_names or ()))


def _load(model):
    if isinstance(model, (str, os.PathLike)):
        return load_transformer(model)
    return model


def _publish(temp, base_path, version):
    """Renames `temp` to ``base_path/<version>``; with version None, the next free number."""
    explicit = version is not None
    taken = 0  # Highest number held by something that is not a version folder (a file named "3").
    for _ in range(1000):
        candidate = version if explicit else max(next_version(base_path), taken + 1)
        target = base_path / str(candidate)
        if target.exists() and (explicit or not target.is_dir() or any(target.iterdir())):
            taken = candidate
            if explicit:
                raise ConfigError(f"Version {candidate} appeared in '{base_path}' during the export; it was left "
                                  f"untouched. Received: version={candidate}")
            continue
        try:
            # rename() onto an existing non-empty folder fails, so a version another
            # export published meanwhile is never replaced.
            os.rename(temp, target)
            return candidate
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY) or explicit:
                raise WeightsError(f"Cannot publish the export as version {candidate} ({error.strerror or error}). "
                                   f"Received: base_path='{base_path}'") from None
    raise WeightsError(f"Could not find a free version number in '{base_path}'.")
