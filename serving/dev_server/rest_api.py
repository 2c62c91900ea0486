"""REST front end: TF Serving's ``/v1/models/...`` HTTP API, JSON codec included.

Bad HTTP gets an answer, never a dropped connection or a stuck thread: a missing,
malformed or oversized ``Content-Length`` is answered 411, 400 or 413 without
reading the body; a chunked body is refused once (411) and the connection closed;
every socket read has a timeout (408); JSON nested too deeply is a 400.
"""

import base64
import binascii
import json
import logging
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from ..status import HTTP_STATUS, Code
from .errors import ServingError
from .limits import DEFAULT_TIMEOUT_SECONDS
from .servable import DEFAULT_SIGNATURE
from .service import get_model_metadata, get_model_status

logger = logging.getLogger("dev_server")
_MAX_VERSION = 2 ** 63 - 1  # ModelSpec.version is an int64.

_PREDICT_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?(?:/(metadata))?")


def _model_spec(spec, name, version, label):
    spec.name = urllib.parse.unquote(name or "")
    if version:
        if int(version) > _MAX_VERSION:  # As TF Serving's SimpleAtoi: a 400, not a 500.
            raise ServingError(Code.INVALID_ARGUMENT, f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    if label:
        spec.version_label = urllib.parse.unquote(label)


def _json_leaves(value, dtype, name):
    """Nested JSON lists of one input -> np.ndarray of `dtype`, with TF Serving's type rules."""
    if dtype == tf.string:
        return _json_strings(value, name)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise ServingError(Code.INVALID_ARGUMENT, f"Input '{name}': lists of unequal length (a ragged "
                                                  "tensor); every instance must have the same shape") from None
    kind = array.dtype.kind
    if dtype.is_integer and kind not in "iu" or dtype.is_floating and kind not in "iuf" or kind in "bOUS":
        if array.size == 0 and kind == "f":
            array = array.astype(dtype.as_numpy_dtype)
        else:
            sample = array.ravel()[0] if array.size else value
            raise ServingError(Code.INVALID_ARGUMENT, f"JSON Value: {json.dumps(_jsonable(sample))} is not of "
                                                      f"expected type: {dtype.name} (input '{name}')")
    if dtype.is_integer and array.size and (array.min() < dtype.min or array.max() > dtype.max):
        raise ServingError(Code.INVALID_ARGUMENT, f"Input '{name}': values outside the range of {dtype.name} "
                                                  f"[{dtype.min}, {dtype.max}]")
    return array.astype(dtype.as_numpy_dtype)


def _jsonable(value):
    return value.item() if isinstance(value, np.generic) else value


def _json_strings(value, name):
    leaves, shape = [], []

    def walk(item, level):
        if isinstance(item, list):
            if level == len(shape):
                shape.append(len(item))
            elif level > len(shape) or shape[level] != len(item):
                raise ServingError(Code.INVALID_ARGUMENT, f"Input '{name}': lists of unequal length (a ragged tensor)")
            for element in item:
                walk(element, level + 1)
            return
        if isinstance(item, dict):
            if set(item) != {"b64"} or not isinstance(item["b64"], str):
                raise ServingError(Code.INVALID_ARGUMENT, f"JSON Value: {json.dumps(item)[:200]} not formatted "
                                                          "correctly for base64 data")
            try:
                leaves.append(base64.b64decode(item["b64"], validate=True))
            except (binascii.Error, ValueError):
                raise ServingError(Code.INVALID_ARGUMENT, "Unable to base64 decode") from None
        elif isinstance(item, str):
            leaves.append(item.encode("utf-8"))
        else:
            raise ServingError(Code.INVALID_ARGUMENT, f"JSON Value: {json.dumps(item)[:200]} is not of expected "
                                                      f"type: string (input '{name}')")

    walk(value, 0)
    if int(np.prod(shape)) != len(leaves):
        raise ServingError(Code.INVALID_ARGUMENT, f"Input '{name}': lists of unequal length or values at "
                                                  "different depths (a ragged tensor)")
    array = np.empty(len(leaves), dtype=object)
    array[:] = leaves
    return array.reshape(shape)


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def parse_json_predict(body, signature_inputs):
    """A REST ``:predict`` body -> (signature name or "", {alias: np.ndarray}, row format?).

    Args:
        body: bytes. The request body.
        signature_inputs: callable(signature name) -> {alias: TensorInfo}.

    Raises:
        ServingError: INVALID_ARGUMENT for anything TF Serving's JSON parser refuses.
    """
    if not body.strip():
        raise ServingError(Code.INVALID_ARGUMENT, "JSON Parse error: The document is empty")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ServingError(Code.INVALID_ARGUMENT, f"JSON Parse error: {error}") from None
    except RecursionError:
        raise ServingError(Code.INVALID_ARGUMENT, "JSON Parse error: the document is nested too deeply") from None
    if not isinstance(document, dict):
        raise ServingError(Code.INVALID_ARGUMENT, "JSON Value: the request body Is not object")
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise ServingError(Code.INVALID_ARGUMENT, "'signature_name' key must be a string value.")
    infos = signature_inputs(signature_name)
    dtypes = {alias: tf.dtypes.as_dtype(info.dtype) for alias, info in infos.items()}
    if ("instances" in document) == ("inputs" in document):
        raise ServingError(Code.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key" if "inputs" not in document
                           else "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if "instances" in document:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise ServingError(Code.INVALID_ARGUMENT, "Excepting 'instances' to be an list/array")
        if not instances:
            raise ServingError(Code.INVALID_ARGUMENT, "No values in 'instances' array")
        named = isinstance(instances[0], dict) and not _is_b64(instances[0])
        if not named and len(infos) > 1:
            raise ServingError(Code.INVALID_ARGUMENT, "instances is a plain list, but expecting list of objects as "
                                                      "multiple input tensors required as per tensorinfo_map")
        columns = {alias: [] for alias in infos}
        for index, item in enumerate(instances):
            is_object = isinstance(item, dict) and not _is_b64(item)
            if is_object != named:
                raise ServingError(Code.INVALID_ARGUMENT, (
                    f"Expecting {'object' if named else 'value/list'} but got {'object' if is_object else 'list'} "
                    f"at item {index} of input list"))
            if named:
                if set(item) != set(infos):
                    raise ServingError(Code.INVALID_ARGUMENT, f"Failed to process element: {index} of 'instances' "
                                                              f"list. JSON object keys must be equal to: "
                                                              f"{','.join(sorted(infos))}")
                for alias in infos:
                    columns[alias].append(item[alias])
            else:
                columns[next(iter(infos))].append(item)
        return signature_name, {a: _json_leaves(v, dtypes[a], a) for a, v in columns.items()}, True
    inputs = document["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        missing = [alias for alias in infos if alias not in inputs]
        if missing:
            raise ServingError(Code.INVALID_ARGUMENT, f"Missing named input: {missing[0]} in 'inputs' object.")
        return signature_name, {a: _json_leaves(inputs[a], dtypes[a], a) for a in infos}, False
    if len(infos) > 1:
        raise ServingError(Code.INVALID_ARGUMENT, "inputs is a plain value/list, but expecting an object as multiple "
                                                  "input tensors required as per tensorinfo_map")
    alias = next(iter(infos))
    return signature_name, {alias: _json_leaves(inputs, dtypes[alias], alias)}, False


def _json_value(array, name):
    """An output array as JSON values; DT_STRING outputs named ``*_bytes`` as {"b64": ...}."""
    if array.dtype == object:
        as_bytes = name.endswith("_bytes")

        def convert(item):
            if isinstance(item, list):
                return [convert(i) for i in item]
            if as_bytes:
                return {"b64": base64.b64encode(item).decode("ascii")}
            return item.decode("utf-8", errors="replace")

        return convert(array.tolist())
    return array.tolist()


def make_json_predict_response(outputs, row_format):
    """Outputs -> TF Serving's ``{"predictions": [...]}`` (row) or ``{"outputs": ...}`` (columnar)."""
    if row_format:
        batch = {len(a) if a.ndim else None for a in outputs.values()}
        if None in batch or len(batch) != 1:
            raise ServingError(Code.INVALID_ARGUMENT, "Tensor outputs have inconsistent batch sizes")
        values = {name: _json_value(array, name) for name, array in outputs.items()}
        if len(values) == 1:
            return {"predictions": next(iter(values.values()))}
        return {"predictions": [dict(zip(values, row)) for row in zip(*values.values())]}
    values = {name: _json_value(array, name) for name, array in outputs.items()}
    return {"outputs": next(iter(values.values())) if len(values) == 1 else values}


class RestHandler(BaseHTTPRequestHandler):
    """TF Serving's REST API (``/v1/models/...``) over a ModelManager (``self.server.manager``).

    ``self.server.max_body_bytes`` bounds a request body; ``timeout`` (set per server
    by :func:`make_rest_server`) bounds every socket read.
    """

    protocol_version = "HTTP/1.1"
    server_version = "nst_tf-dev-model-server"
    timeout = DEFAULT_TIMEOUT_SECONDS

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature.
        logger.debug("REST %s", format % args)

    def do_GET(self):  # noqa: N802 - http.server method name.
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def _read_body(self):
        """The request body; raises _HttpError for a body that is not read (and closes the connection)."""
        if self.headers.get("Transfer-Encoding"):
            raise _HttpError(411, "Transfer-Encoding is not supported: send the body with a Content-Length header")
        text = self.headers.get("Content-Length")
        if text is None:
            return b""
        if not re.fullmatch(r"[0-9]{1,19}", text.strip()):
            raise _HttpError(400, f"Malformed Content-Length: {text[:40]!r}")
        length = int(text)
        if length > self.server.max_body_bytes:
            raise _HttpError(413, f"The request body of {length} bytes is larger than the {self.server.max_body_bytes} "
                                  "bytes this server accepts (--max_image_size)")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise _HttpError(408, f"The request body did not arrive within {self.timeout:g} s") from None
        if len(body) != length:
            raise _HttpError(400, f"The request body ended after {len(body)} of {length} bytes")
        return body

    def _handle(self, method):
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._read_body()
            if not re.fullmatch(r"(?i)/v1/.*", path):
                raise ServingError(Code.NOT_FOUND, f"Not found: {method} {path}")
            result = self._dispatch(method, path, body)
            status = 200
        except _HttpError as error:
            self.close_connection = True  # The unread body must not be taken for the next request.
            result, status = {"error": error.message}, error.status
        except ServingError as error:
            result, status = {"error": error.message}, HTTP_STATUS.get(error.code, 500)
        except RecursionError:
            result, status = {"error": "The request is nested too deeply"}, 400
        except Exception as error:  # noqa: BLE001 - a bug here must not kill the server.
            logger.exception("Internal error")
            result, status = {"error": f"{type(error).__name__}: {error}"}, 500
        payload = (result if isinstance(result, str) else json.dumps(result)).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def _dispatch(self, method, path, body):
        manager = self.server.manager
        spec = predict_pb2.PredictRequest().model_spec
        if method == "POST" and (match := _PREDICT_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            _model_spec(spec, name, version, label)
            if verb.lower() != "predict":
                raise ServingError(Code.UNIMPLEMENTED, f"The development server implements :predict only, not :{verb}")
            servable = manager.servable(spec)

            def inputs_of(signature_name):
                name = signature_name or DEFAULT_SIGNATURE
                signature = servable.signature_defs.get(name)
                if signature is None:
                    raise ServingError(Code.INVALID_ARGUMENT, f'Serving signature name: "{name}" not found in '
                                                              "signature def")
                return dict(signature.inputs)

            signature_name, inputs, row_format = parse_json_predict(body, inputs_of)
            _, outputs = servable.predict(signature_name, inputs)
            return make_json_predict_response(outputs, row_format)
        if method == "GET" and (match := _STATUS_PATH.fullmatch(path)):
            name, version, label, subresource = match.groups()
            if not name:
                raise ServingError(Code.INVALID_ARGUMENT, "Missing model name in request.")
            if subresource:
                request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
                _model_spec(request.model_spec, name, version, label)
                response = get_model_metadata(manager, request)
                signatures = get_model_metadata_pb2.SignatureDefMap()
                response.metadata["signature_def"].Unpack(signatures)
                options = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
                return {"model_spec": json_format.MessageToDict(response.model_spec, **options),
                        "metadata": {"signature_def": json_format.MessageToDict(signatures, **options)}}
            request = get_model_status_pb2.GetModelStatusRequest()
            _model_spec(request.model_spec, name, version, label)
            return json_format.MessageToJson(get_model_status(manager, request),
                                             always_print_fields_with_no_presence=True)
        raise ServingError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")



class _HttpError(Exception):
    """An HTTP-level failure (before the request reaches TF Serving's API): status and message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def make_rest_server(manager, host, port, limits, timeout=DEFAULT_TIMEOUT_SECONDS):
    """A ThreadingHTTPServer of :class:`RestHandler`, bound, not yet serving.

    Args:
        manager: ModelManager.
        host, port: address; port 0 picks a free one.
        limits: limits.RequestLimits or None (None: bodies up to 2 GiB).
        timeout: float. Seconds any socket read may wait.

    Raises:
        OSError: the address cannot be bound.
    """
    handler = type("BoundRestHandler", (RestHandler,), {"timeout": timeout})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.manager = manager
    server.max_body_bytes = limits.rest_bytes if limits is not None else 2 ** 31
    return server
