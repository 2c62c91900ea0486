"""Clients of the style service: gRPC (tensorflow-serving-api) and REST (requests).

Both talk to TensorFlow Serving (or the development server, :mod:`.dev_server`) and share one interface:
:meth:`stylize` (uint8 pixels through ``serving_default``), :meth:`stylize_bytes`
(image files through ``stylize_bytes``), :meth:`status` (``GetModelStatus``),
:meth:`metadata` (``GetModelMetadata``) and :meth:`wait_until_available`.  The image
input and output names come from the model's metadata; the signature names, and the
style inputs of a multi-style network, are shared with the exporter (:mod:`nst_tf.signatures`).
A multi-style network's styles are discovered at run time (:meth:`style_names`: the
number of styles from the metadata, their names from the ``style_names`` signature);
:meth:`stylize` then takes a style name or a blend and a strength.  Every call has
a timeout, and calls that find the server ``UNAVAILABLE`` are retried with
exponential backoff by the transport's own mechanism: gRPC's retry policy (a service
config on the channel) and urllib3's ``Retry`` (predictions are idempotent).  Failures
raise :class:`ServingClientError` with a one-line message and the gRPC status name.

Command line (``nst-tf-client --help``; the same as ``python -m nst_tf_serving.client``, or
``python -m serving.client`` from the repository root)::

    nst-tf-client --server localhost:8500 --model styles photo.jpg out.png
    nst-tf-client --rest --model styles --label stable a.jpg b.jpg out_dir/
    nst-tf-client --model styles --pixels --max-size 512 photo.jpg out.jpg
    nst-tf-client --model styles --status
    nst-tf-client --model styles --style-name candy:0.7,udnie:0.3 photo.jpg out.png

tensorflow-serving-api's protos import TensorFlow, so the gRPC client imports it on first
use; ``--help``, ``--status`` (:mod:`.status_messages`) and the REST client's ``--metadata``
never load it, and the command line loads it without TensorFlow's start-up lines (:func:`nst_tf.cli.import_tensorflow`,
shown with ``--verbose``).

Sources: TF Serving gRPC API (``tensorflow_serving/apis/prediction_service.proto``,
``model_service.proto``), REST API (https://www.tensorflow.org/tfx/serving/api_rest),
tensorflow/serving ``example/`` clients; gRPC retries: gRFC A6 (``grpc/proposal``,
``A6-client-retries.md``) and https://grpc.io/docs/guides/retry/; urllib3
``util.retry.Retry``.
"""

import base64
import functools
import io
import json
import os
import pathlib
import sys
import time

import grpc
import numpy as np
import requests
import urllib3

from nst_tf import files, images
from nst_tf.config import style_selection_weights
from nst_tf.cli import add_verbose_argument, ArgumentParser, import_tensorflow, parse_style_selection, program_name
from nst_tf.errors import NstError
from nst_tf.signatures import (
    INPUT_STYLE,
    INPUT_STYLE_INDEX,
    INPUT_STYLE_WEIGHTS,
    OUTPUT_STYLE_NAMES,
    SIGNATURE_BLEND,
    SIGNATURE_BYTES,
    SIGNATURE_IMAGES,
    SIGNATURE_STYLE_NAMES,
)

from . import status as status_table
from . import status_messages

DEFAULT_GRPC_SERVER = "localhost:8500"
DEFAULT_REST_SERVER = "http://localhost:8501"
DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""gRPC message limit of the client, both ways (gRPC's default is 4 MiB: a 1200 px image)."""
GRPC_MAX_ATTEMPTS = 5
"""gRPC clamps a retry policy's ``maxAttempts`` to 5 (gRFC A6): a gRPC call makes at most 4 retries."""
GRPC_SERVICES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
REST_RETRY_STATUSES = (502, 503)
"""HTTP statuses a REST call retries: 503 is TF Serving's UNAVAILABLE, 502 a proxy that cannot reach it.
504 (TF Serving's DEADLINE_EXCEEDED, or a proxy's timeout) is not retried, as gRPC retries no
deadline: a retry would multiply the timeout."""


class ServingClientError(NstError):
    """A call to the model server failed; ``code`` is the gRPC status name (``"NOT_FOUND"``...)."""

    def __init__(self, message, code="UNKNOWN"):
        super().__init__(message)
        self.code = code


class _Client:
    """What the gRPC and REST clients share; see :class:`GrpcClient` for the arguments."""

    def __init__(self, server, model, version=None, label=None, timeout=60.0, retries=3, backoff=0.5):
        if version is not None and label is not None:
            raise ServingClientError(f"Select a model version or a label, not both. Received: version={version}, "
                                     f"label={label!r}", "INVALID_ARGUMENT")
        self.server, self.model, self.version, self.label = server, model, version, label
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.last_version = None
        self._metadata = None
        self._style_names = None

    def close(self):
        """Releases the connection (the subclass's channel or session)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def target(self):
        """``name``, ``name version 3`` or ``name label 'stable'``, for messages."""
        if self.version is not None:
            return f"model '{self.model}' version {self.version}"
        if self.label is not None:
            return f"model '{self.model}' label '{self.label}'"
        return f"model '{self.model}'"

    def _error(self, code, details, timeout=None):
        details = " ".join(str(details).split())
        if code == "UNAVAILABLE":
            return ServingClientError(
                f"Cannot reach the model server at {self.server} ({code} after {self.attempts} attempts: "
                f"{details[:300]}). Is it running? Start one with `nst-tf-dev-server` (serving/README.md).",
                code)
        if code == "NOT_FOUND":
            return ServingClientError(f"The server at {self.server} does not serve {self.target}: {details}", code)
        if code == "DEADLINE_EXCEEDED":
            return ServingClientError(f"No answer from {self.server} within {timeout or self.timeout:g} s for "
                                      f"{self.target}; raise the timeout for large images.", code)
        if code in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"):
            return ServingClientError(f"The server rejected the request for {self.target} ({code}): {details}", code)
        return ServingClientError(f"The request for {self.target} failed ({code}): {details}", code)

    @property
    def attempts(self):
        """Attempts a call makes at most while the server is UNAVAILABLE: ``retries + 1``."""
        return self.retries + 1

    def signature_io(self, signature):
        """``(image input name, output name)`` of a signature, from the metadata (style inputs aside).

        Raises:
            ServingClientError: the signature is missing or has several inputs or outputs.
        """
        signatures = self.metadata()
        if signature not in signatures:
            raise ServingClientError(f"{self.target} has no signature '{signature}'. Available: "
                                     f"{', '.join(sorted(s for s in signatures if not s.startswith('__')))}",
                                     "FAILED_PRECONDITION")
        inputs, outputs = signatures[signature]["inputs"], signatures[signature]["outputs"]
        inputs = {name: dtype for name, dtype in inputs.items() if name not in (INPUT_STYLE, INPUT_STYLE_WEIGHTS)}
        if len(inputs) != 1 or len(outputs) != 1:
            raise ServingClientError(f"Signature '{signature}' of {self.target} must have one input and one output. "
                                     f"Received: inputs={sorted(inputs)}, outputs={sorted(outputs)}",
                                     "FAILED_PRECONDITION")
        return next(iter(inputs)), next(iter(outputs))

    def style_names(self):
        """The styles of a multi-style network, in order; None for a single-style network (cached).

        The count is the last dimension of ``stylize_blend``'s style weights input in the
        metadata; the names come from the ``style_names`` signature.
        """
        signatures = self.metadata()
        if SIGNATURE_STYLE_NAMES not in signatures or SIGNATURE_BLEND not in signatures:
            return None
        if self._style_names is None:
            count = signatures[SIGNATURE_BLEND]["input_shapes"][INPUT_STYLE_WEIGHTS][-1]
            names = self._predict(SIGNATURE_STYLE_NAMES, {INPUT_STYLE_INDEX: np.arange(count, dtype=np.int32)},
                                  OUTPUT_STYLE_NAMES)
            self._style_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        return self._style_names

    def _style_weights(self, style, strength):
        names = self.style_names()
        if names is None and style is None and strength == 1.0:
            return None
        if names is not None and style is None:
            raise ServingClientError(f"{self.target} has {len(names)} styles; choose one ({', '.join(names)}). "
                                     f"Received: style=None", "INVALID_ARGUMENT")
        try:
            return style_selection_weights(names, style, strength)
        except NstError as error:
            raise ServingClientError(f"{self.target}: {error}", "INVALID_ARGUMENT") from None

    def stylize(self, pixels, style=None, strength=1.0):
        """Stylizes images through ``serving_default`` (``stylize_blend`` for a multi-style network).

        Args:
            pixels: array-like uint8 ``[B, H, W, 3]`` or ``[H, W, 3]``, RGB (float values
                in [0, 255] are rounded).
            style: multi-style networks only (and then required): a style name, a dict
                ``{name: weight}`` or N weights (see ``TransformerNet.style_weights``).
            strength: float in [0, 2]; below 1 blends toward the network's ``photo`` style.

        Returns:
            np.ndarray uint8 ``[B, H, W, 3]``.

        Raises:
            ServingClientError: a bad style selection, or the server refused or failed the request.
        """
        array = images.to_uint8(pixels)
        if array.ndim == 3:
            array = array[None]
        weights = self._style_weights(style, strength)
        input_name, output_name = self.signature_io(SIGNATURE_IMAGES)
        if weights is None:
            return np.asarray(self._predict(SIGNATURE_IMAGES, {input_name: array}, output_name), dtype=np.uint8)
        inputs = {input_name: array, INPUT_STYLE_WEIGHTS: weights[None]}
        return np.asarray(self._predict(SIGNATURE_BLEND, inputs, output_name), dtype=np.uint8)

    def stylize_bytes(self, files, style=None):
        """Stylizes encoded images through ``stylize_bytes``.

        Args:
            files: sequence of bytes, each a JPEG, PNG, GIF, BMP or WebP file.
            style: str. A multi-style network's style name (blends need :meth:`stylize`).

        Returns:
            list of bytes, each a PNG (or JPEG, as exported) file.

        Raises:
            ServingClientError: the server refused or failed the request.
        """
        input_name, output_name = self.signature_io(SIGNATURE_BYTES)
        array = np.empty(len(files), dtype=object)
        array[:] = [bytes(f) for f in files]
        inputs = {input_name: array}
        if self.style_names() is not None or style is not None:
            if not isinstance(style, str):
                raise ServingClientError(f"{self.target}: stylize_bytes takes one style name; use stylize() for a "
                                         f"blend. Received: style={style!r}", "INVALID_ARGUMENT")
            self._style_weights(style, 1.0)  # An unknown name fails here, with the names the model has.
            inputs[INPUT_STYLE] = np.array([style.encode()], dtype=object)
        return list(self._predict(SIGNATURE_BYTES, inputs, output_name))

    def is_available(self):
        """True when the selected version (the latest when none is selected) is AVAILABLE."""
        states = self.status()
        return any(s["state"] == "AVAILABLE" for s in states)

    def _status_waiting(self, seconds):
        """:meth:`status`, waiting up to `seconds` for the server where the transport can."""
        return self.status()

    def wait_until_available(self, timeout=60.0, interval=0.2):
        """Polls :meth:`status` until a version is AVAILABLE.

        The gRPC client's polls wait for the server to come up (``wait_for_ready``) within
        what is left of `timeout`; a model still loading is polled again after `interval`.

        Args:
            timeout: float. Seconds to wait at most.
            interval: float. Seconds between polls.

        Raises:
            ServingClientError: still not available after `timeout` (the last error's code).
        """
        deadline = time.monotonic() + timeout
        last = ServingClientError(f"{self.target} has no AVAILABLE version", "UNAVAILABLE")
        while True:
            try:
                states = self._status_waiting(max(deadline - time.monotonic(), 0.01))
                if any(s["state"] == "AVAILABLE" for s in states):
                    return
            except ServingClientError as error:
                last = error
            if time.monotonic() > deadline:
                raise ServingClientError(f"Not available after {timeout:g} s: {last}", last.code)
            time.sleep(interval)


class GrpcClient(_Client):
    """gRPC client of TF Serving's PredictionService and ModelService.

    Args:
        server: str. ``host:port`` of the gRPC API. Defaults to ``localhost:8500``.
        model: str. Model name (the ``name`` in models.config).
        version: int or None. Model version to use; None uses the latest.
        label: str or None. Version label (``version_labels`` in models.config).
        timeout: float. Seconds each call may take, its retries included. Defaults to 60.
        retries: int >= 0. Retries of a call answered ``UNAVAILABLE``, by gRPC's retry
            policy; gRPC makes at most 4 (:data:`GRPC_MAX_ATTEMPTS`). Defaults to 3.
        backoff: float. Seconds of the first retry's backoff, doubling for each next one
            (gRPC waits a random time up to it). Defaults to 0.5.
        max_message_bytes: int. Largest message sent or received. Defaults to 512 MiB.

    Raises:
        ServingClientError: both `version` and `label` given.
    """

    def __init__(self, server=DEFAULT_GRPC_SERVER, model="default", version=None, label=None, timeout=60.0,
                 retries=3, backoff=0.5, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES):
        super().__init__(server, model, version, label, timeout, retries, backoff)
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes),
                   *grpc_retry_options(self.retries, self.backoff, max_message_bytes)]
        self.channel = grpc.insecure_channel(server, options=options)
        # GetModelStatus through messages of its own: a status check never waits for TensorFlow.
        self._get_model_status = self.channel.unary_unary(
            status_messages.GET_MODEL_STATUS, request_serializer=status_messages.GetModelStatusRequest.SerializeToString,
            response_deserializer=status_messages.GetModelStatusResponse.FromString)

    @functools.cached_property
    def prediction(self):
        """``PredictionService`` stub of tensorflow-serving-api (imports TensorFlow on first use)."""
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        return prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def close(self):
        self.channel.close()

    def model_spec(self, spec, signature=""):
        """Fills a ``ModelSpec`` proto with the model, version or label, and `signature`."""
        spec.name = self.model
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.label is not None:
            spec.version_label = self.label
        if signature:
            spec.signature_name = signature
        return spec

    @property
    def attempts(self):
        return min(self.retries + 1, GRPC_MAX_ATTEMPTS)

    def _call(self, method, request, timeout=None, wait_for_ready=None):
        """``method(request)`` with the channel's retry policy; a failure, once retries are spent,
        raises ServingClientError (a deadline reported with `timeout`, seconds; None: the client's)."""
        try:
            return method(request, timeout=timeout or self.timeout, wait_for_ready=wait_for_ready)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self._error("DEADLINE_EXCEEDED", "", timeout) from None
            if "Failed parsing HTTP/2" in (error.details() or ""):
                raise ServingClientError(
                    f"The server at {self.server} does not speak gRPC (it answered in HTTP/1): that looks like a "
                    f"REST port (TF Serving's --rest_api_port, 8501 by default). Point --server at the gRPC port "
                    f"(--port, 8500), or add --rest.", "UNAVAILABLE") from None
            raise self._error(error.code().name, error.details()) from None

    def status(self):
        """``GetModelStatus``: list of ``{"version", "state", "error_code", "error_message"}`` dicts."""
        return self._status(min(self.timeout, 10.0))

    def _status_waiting(self, seconds):
        return self._status(seconds, wait_for_ready=True)

    def _status(self, timeout, wait_for_ready=None):
        request = status_messages.GetModelStatusRequest()
        self.model_spec(request.model_spec)
        response = self._call(self._get_model_status, request, timeout, wait_for_ready)
        return [{"version": s.version, "state": status_table.state_name(s.state),
                 "error_code": status_table.code_of_value(s.status.error_code).name,
                 "error_message": s.status.error_message}
                for s in response.model_version_status]

    def metadata(self):
        """``GetModelMetadata``: ``{signature: {"inputs": {name: dtype}, "outputs": {name: dtype},
        "input_shapes": {name: [dim, ...] or None}}}`` (cached).

        Dtypes are ``DataType`` names such as ``"DT_UINT8"``; unknown dimensions are -1.
        """
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        if self._metadata is None:
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            self.model_spec(request.model_spec)
            response = self._call(self.prediction.GetModelMetadata, request, min(self.timeout, 10.0))
            signatures = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            self._metadata = {
                key: {"inputs": {n: types_pb2.DataType.Name(i.dtype) for n, i in sig.inputs.items()},
                      "outputs": {n: types_pb2.DataType.Name(i.dtype) for n, i in sig.outputs.items()},
                      "input_shapes": {n: None if i.tensor_shape.unknown_rank else [d.size for d in i.tensor_shape.dim]
                                       for n, i in sig.inputs.items()}}
                for key, sig in signatures.signature_def.items()}
        return self._metadata

    def _predict(self, signature, inputs, output_name):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self.model_spec(request.model_spec, signature)
        for input_name, array in inputs.items():
            dtype = tf.string if array.dtype == object else None
            request.inputs[input_name].CopyFrom(tf.make_tensor_proto(array, dtype=dtype))
        request.output_filter.append(output_name)
        response = self._call(self.prediction.Predict, request)
        self.last_version = response.model_spec.version.value
        if output_name not in response.outputs:
            raise ServingClientError(f"The response of {self.target} lacks output '{output_name}'.", "INTERNAL")
        return tf.make_ndarray(response.outputs[output_name])


class RestClient(_Client):
    """REST client of TF Serving's HTTP API (``/v1/models/...``), through requests.

    Args:
        server: str. Base URL, ``http://host:port`` (``host:port`` gets ``http://``).
            Defaults to ``http://localhost:8501``.
        session: requests.Session or None. Reused connections; None makes one. The
            client mounts its retrying adapter on it for `server`'s URLs.
        retries: int >= 0. Retries of a request that finds no server (connection refused
            or dropped) or is answered 502 or 503, by urllib3's ``Retry``. Defaults to 3.
        backoff: float. urllib3's schedule: the first retry at once, then after
            `backoff`, doubling each time. Defaults to 0.5.
        Other arguments as :class:`GrpcClient`.

    Raises:
        ServingClientError: both `version` and `label` given.
    """

    def __init__(self, server=DEFAULT_REST_SERVER, model="default", version=None, label=None, timeout=60.0,
                 retries=3, backoff=0.5, session=None):
        if "://" not in server:
            server = f"http://{server}"
        super().__init__(server.rstrip("/"), model, version, label, timeout, retries, backoff)
        self.session = session or requests.Session()
        self.session.mount(f"{self.server}/", requests.adapters.HTTPAdapter(
            max_retries=rest_retry(self.retries, self.backoff)))

    def close(self):
        self.session.close()

    def url(self, suffix=""):
        """``{server}/v1/models/{model}[/versions/{v}|/labels/{l}]{suffix}``."""
        path = f"{self.server}/v1/models/{requests.utils.quote(self.model, safe='')}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        elif self.label is not None:
            path += f"/labels/{requests.utils.quote(self.label, safe='')}"
        return path + suffix

    def _request(self, method, url, body=None, timeout=None):
        """One request through the session's retrying adapter; the answer's JSON, or, once
        retries are spent, ServingClientError with the gRPC code of the HTTP status."""
        timeout = timeout or self.timeout
        try:
            response = self.session.request(method, url, json=body, timeout=timeout)
        except requests.Timeout:
            raise self._error("DEADLINE_EXCEEDED", "", timeout) from None
        except requests.ConnectionError as error:
            if _answered_http2(error):
                raise ServingClientError(
                    f"The server at {self.server} answered in HTTP/2: that is a gRPC port (TF Serving's --port, 8500 "
                    f"by default), not the REST port (--rest_api_port, 8501). Point --server at the REST port, "
                    f"or drop --rest to use gRPC.", "UNAVAILABLE") from None
            raise self._error("UNAVAILABLE", error) from None
        if response.status_code == 200:
            try:
                return response.json()
            except ValueError:
                raise self._error("INTERNAL", f"the answer is not JSON: {response.text[:200]!r}") from None
        try:
            details = response.json().get("error", response.text)
        except ValueError:
            details = response.text or response.reason
        code = status_table.code_of_http(response.status_code).name
        raise self._error(code, f"HTTP {response.status_code}: {details}")

    def status(self):
        """``GET /v1/models/<name>``: as :meth:`GrpcClient.status`."""
        answer = self._request("GET", self.url(), timeout=min(self.timeout, 10.0))
        return [{"version": int(s["version"]), "state": s["state"], "error_code": s.get("status", {}).get("error_code"),
                 "error_message": s.get("status", {}).get("error_message", "")}
                for s in answer.get("model_version_status", [])]

    def metadata(self):
        """``GET /v1/models/<name>/metadata``: as :meth:`GrpcClient.metadata` (cached)."""
        if self._metadata is None:
            answer = self._request("GET", self.url("/metadata"), timeout=min(self.timeout, 10.0))
            signatures = answer["metadata"]["signature_def"]["signature_def"]
            self._metadata = {
                key: {"inputs": {n: i.get("dtype") for n, i in sig.get("inputs", {}).items()},
                      "outputs": {n: i.get("dtype") for n, i in sig.get("outputs", {}).items()},
                      "input_shapes": {n: _rest_shape(i) for n, i in sig.get("inputs", {}).items()}}
                for key, sig in signatures.items()}
        return self._metadata

    def _predict(self, signature, inputs, output_name):
        if len(inputs) > 1:  # TF Serving's columnar format: inputs of different batch sizes.
            columns = {name: _json_values(array) for name, array in inputs.items()}
            answer = self._request("POST", self.url(":predict"), {"signature_name": signature, "inputs": columns})
            outputs = answer.get("outputs")
            if isinstance(outputs, dict):
                outputs = outputs.get(output_name)
            if not isinstance(outputs, list):
                raise ServingClientError(f"The answer of {self.target} has no outputs.", "INTERNAL")
            return _from_json(outputs, outputs and isinstance(outputs[0], dict))
        ((_, array),) = inputs.items()
        instances = _json_values(array)
        answer = self._request("POST", self.url(":predict"), {"signature_name": signature, "instances": instances})
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != len(array):
            raise ServingClientError(f"The answer of {self.target} has no predictions for the {len(array)} "
                                     "images sent.", "INTERNAL")
        if predictions and isinstance(predictions[0], dict) and "b64" not in predictions[0]:
            predictions = [p[output_name] for p in predictions]  # Several outputs: one object per row.
        return _from_json(predictions, array.dtype == object)


def _duration(seconds):
    """Seconds as a protobuf JSON Duration (``"0.500000000s"``); gRPC needs a backoff above zero."""
    return f"{max(seconds, 1e-3):.9f}s"


def grpc_retry_options(retries, backoff, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES):
    """Channel options that retry calls answered ``UNAVAILABLE`` to TF Serving's services.

    Args:
        retries: int >= 0. Retries per call; 0 adds no retry policy. More than
            ``GRPC_MAX_ATTEMPTS - 1`` are clamped (gRPC would clamp them too).
        backoff: float. Seconds: ``initialBackoff``; gRPC waits a random time up to
            ``backoff * 2**n`` before retry n + 1.
        max_message_bytes: int. Largest request kept for a retry (gRPC's default keeps
            256 KiB, and a larger request, a 300 px image, would not be retried).

    Returns:
        list of ``(name, value)`` channel options: ``grpc.enable_retries``,
        ``grpc.service_config`` (JSON ``methodConfig`` with a ``retryPolicy``) and
        ``grpc.per_rpc_retry_buffer_size``.
    """
    options = [("grpc.enable_retries", 1)]
    if retries < 1:
        return options
    attempts = min(retries + 1, GRPC_MAX_ATTEMPTS)
    policy = {"maxAttempts": attempts, "initialBackoff": _duration(backoff),
              "maxBackoff": _duration(backoff * 2 ** (attempts - 2)), "backoffMultiplier": 2,
              "retryableStatusCodes": ["UNAVAILABLE"]}
    config = {"methodConfig": [{"name": [{"service": name} for name in GRPC_SERVICES], "retryPolicy": policy}]}
    return options + [("grpc.service_config", json.dumps(config)),
                      ("grpc.per_rpc_retry_buffer_size", int(max_message_bytes))]


def _answered_http2(error):
    """Whether an HTTP/1.1 request got an HTTP/2 frame back: a gRPC port, not a REST one."""
    # A gRPC server opens with a SETTINGS frame (length 0x0000.., type 4), which http.client reads
    # as a status line of NUL bytes.
    return "BadStatusLine" in repr(error) and "\\x00\\x00" in repr(error)


class _RetryUnlessTimedOut(urllib3.util.Retry):
    """urllib3's Retry, except that a read timeout or an HTTP/2 answer is raised at once: the
    server is there but slow, and retrying would multiply the timeout (gRPC retries no deadline
    either); or it speaks gRPC, and asking again cannot change that."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, urllib3.exceptions.ReadTimeoutError) or _answered_http2(error):
            raise error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def rest_retry(retries, backoff):
    """The urllib3 ``Retry`` of the REST client: `retries` retries (int >= 0) of refused or dropped
    connections and of 502 and 503 answers, every method, waiting 0, `backoff`, 2 `backoff`... seconds."""
    # Every method, POST included: a prediction is idempotent (same input, same output, no state
    # changes on the server), so a retry cannot do twice what the caller asked for once.
    # raise_on_status=False hands the last 503 back, so that its error text reaches the message.
    return _RetryUnlessTimedOut(total=retries, connect=retries, read=retries, status=retries, other=0,
                                allowed_methods=None, status_forcelist=REST_RETRY_STATUSES,
                                backoff_factor=backoff / 2, raise_on_status=False)


def _json_values(array):
    """An array as TF Serving's JSON: nested lists; strings as ``{"b64": ...}``."""
    if array.dtype == object:
        return [{"b64": base64.b64encode(item).decode("ascii")} for item in array]
    return array.tolist()


def _from_json(values, encoded):
    """TF Serving's JSON output back to an array (uint8 pixels) or a list of bytes (``{"b64": ...}`` or text)."""
    if encoded:
        return [base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode() for v in values]
    if values and isinstance(values[0], str):  # String outputs without the _bytes suffix come as text.
        return [v.encode() for v in values]
    return np.asarray(values, dtype=np.uint8)


def _rest_shape(info):
    """``[dim, ...]`` of a REST metadata TensorInfo (``-1`` unknown), or None for an unknown rank."""
    shape = info.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        return None
    return [int(d.get("size", -1)) for d in shape.get("dim", [])]


def make_client(server=None, model="default", rest=False, **kwargs):
    """A :class:`GrpcClient`, or a :class:`RestClient` when `rest`; `server` defaults per protocol."""
    if rest:
        return RestClient(server or DEFAULT_REST_SERVER, model, **kwargs)
    return GrpcClient(server or DEFAULT_GRPC_SERVER, model, **kwargs)


# --- Command line ---------------------------------------------------------------------------------


def _write_bytes(data, path):
    """Writes `data` to `path` atomically (temporary file in the same folder, then rename)."""
    path = images.check_output_path(path)
    with files.atomic_path(path) as temp:
        temp.write_bytes(data)
    return path


def _save_encoded(data, path):
    """Saves an encoded image as `path`: as is when the format matches, else re-encoded."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        source_format = image.format
        pixels = np.asarray(image.convert("RGB"))
    wanted = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(pathlib.Path(path).suffix.lower())
    if wanted == source_format:
        return _write_bytes(data, path)
    return images.save_image(pixels, path)


def _output_paths(inputs, output, output_format):
    if len(inputs) == 1 and not (output.endswith(("/", os.sep)) or pathlib.Path(output).is_dir()):
        return [images.check_output_path(output)]
    folder = pathlib.Path(output)
    if folder.exists() and not folder.is_dir():
        raise images.ImageError(f"With several inputs the output must be a folder. Received: output='{output}'")
    paths = [folder / f"{pathlib.Path(p).stem}.{output_format}" for p in inputs]
    if len(set(paths)) != len(paths):
        raise images.ImageError("Two inputs have the same file name stem and would overwrite each other's output. "
                                f"Received: inputs={inputs}")
    return [images.check_output_path(p) for p in paths]


def build_parser():
    parser = ArgumentParser(
        prog=program_name(f"{__package__}.client"),
        description="Stylize images with a fast style network served by TensorFlow Serving (or nst-tf-dev-server).",
        epilog="Exit status: 0 done, 2 bad input, unreachable server, unknown model or rejected request.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="input images, then the output file (one input) or folder (several inputs)")
    parser.add_argument("--server", help=f"gRPC host:port ({DEFAULT_GRPC_SERVER}) or, with --rest, the REST URL "
                        f"({DEFAULT_REST_SERVER})")
    parser.add_argument("--rest", action="store_true", help="use the REST API instead of gRPC")
    parser.add_argument("--model", required=True, help="model name, e.g. styles")
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument("--version", type=int, help="model version (default: the latest)")
    selection.add_argument("--label", help="model version label, e.g. stable")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--pixels", action="store_true",
                      help="send uint8 pixels through serving_default instead of PNG files through stylize_bytes "
                      "(under TF Serving's --enable_batching, concurrent requests of different sizes then fail)")
    mode.add_argument("--raw", action="store_true",
                      help="send the files as they are through stylize_bytes (the server decodes them: no EXIF "
                      "rotation, JPEG/PNG/GIF/BMP only)")
    parser.add_argument("--style-name", metavar="NAME[:W,...]",
                        help="multi-style network: the style, or a blend such as candy:0.7,udnie:0.3 "
                        "(the model lists its styles: --metadata)")
    parser.add_argument("--style-strength", type=float, default=1.0, metavar="S",
                        help="multi-style network with a 'photo' style: 0 is its 'photo' style (the network's "
                             "rendering of the photo), 1 the style, up to 2 (1)")
    parser.add_argument("--max-size", type=int, help="resize inputs so that the longest side is MAX_SIZE px first")
    parser.add_argument("--output-format", default="png", choices=("png", "jpg", "webp"),
                        help="file type in an output folder (%(default)s)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (%(default)s)")
    parser.add_argument("--retries", type=int, default=3, help="retries while the server is unavailable (%(default)s)")
    parser.add_argument("--wait", type=float, default=0.0, metavar="S",
                        help="first wait up to S seconds for the server to start and the model to load, e.g. "
                        "right after docker compose up (%(default)s: don't wait)")
    parser.add_argument("--status", action="store_true", help="print the model's version status and exit "
                        "(exit 0 when a version is AVAILABLE)")
    parser.add_argument("--metadata", action="store_true", help="print the model's signatures and exit")
    add_verbose_argument(parser)
    return parser


def run(args):
    """Runs the command line from parsed flags; returns the exit status. Raises NstError."""
    if args.timeout <= 0 or args.retries < 0 or args.wait < 0:
        raise ServingClientError(f"--timeout must be > 0, --retries and --wait >= 0. Received: timeout={args.timeout}, "
                                 f"retries={args.retries}, wait={args.wait}", "INVALID_ARGUMENT")
    report = args.status or args.metadata
    if not report:  # Flags and files first: a mistake answers before TensorFlow loads or the server is asked.
        if args.raw and args.max_size is not None:
            raise ServingClientError("--max-size needs decoded images; it cannot be combined with --raw.",
                                     "INVALID_ARGUMENT")
        if args.max_size is not None and args.max_size < 1:
            raise ServingClientError(f"--max-size must be a number of pixels >= 1. Received: max_size={args.max_size}",
                                     "INVALID_ARGUMENT")
        if len(args.paths) < 2:
            raise ServingClientError("Give one or more input images and then an output file or folder, or --status. "
                                     f"Received: paths={args.paths}", "INVALID_ARGUMENT")
        style = None if args.style_name is None else parse_style_selection(args.style_name)
        blend = style is not None and (len(style) > 1 or args.style_strength != 1.0)
        if blend and args.raw:
            raise ServingClientError("A blend or a strength needs pixels (stylize_blend); drop --raw.",
                                     "INVALID_ARGUMENT")
        inputs, output = args.paths[:-1], args.paths[-1]
        outputs = _output_paths(inputs, output, args.output_format)
        files.check_outputs_spare_inputs(outputs, inputs)
        for path in inputs:  # Fail on a missing file before sending anything.
            if not pathlib.Path(path).is_file():
                raise images.ImageError(f"Image file not found. Received: path='{path}'")
    # tensorflow-serving-api's protos, the style selection and the PNG encoder import TensorFlow; a status
    # check needs none of them, nor does a REST report.
    tf = None if report and (args.rest or not args.metadata) else import_tensorflow(args.verbose)
    with make_client(args.server, args.model, args.rest, version=args.version, label=args.label,
                     timeout=args.timeout, retries=args.retries) as client:
        if args.wait:
            client.wait_until_available(args.wait)
        if report:
            if args.status:
                for state in client.status():
                    error = f" {state['error_message']}" if state["error_message"] else ""
                    print(f"{args.model} version {state['version']}: {state['state']}{error}")
            if args.metadata:
                for name, signature in sorted(client.metadata().items()):
                    if not name.startswith("__"):
                        print(f"{name}: inputs {signature['inputs']} -> outputs {signature['outputs']}")
                names = client.style_names()
                if names:
                    print(f"styles: {', '.join(names)}")
            if args.status and not client.is_available():
                raise ServingClientError(f"{client.target} has no AVAILABLE version at {client.server}.", "UNAVAILABLE")
            return 0
        name = None if style is None else next(iter(style))
        client._style_weights(style, args.style_strength)  # A bad or missing style fails before any upload.
        for source, target in zip(inputs, outputs):
            start = time.perf_counter()
            if args.raw:
                saved = _save_encoded(client.stylize_bytes([pathlib.Path(source).read_bytes()], name)[0], target)
            else:  # Decoded here: EXIF orientation, alpha on white, every format Pillow reads.
                pixels = images.to_uint8(images.load_image(source, max_size=args.max_size))
                if args.pixels or blend:
                    saved = images.save_image(client.stylize(pixels, style, args.style_strength), target)
                else:
                    encoded = tf.io.encode_png(pixels[0]).numpy()
                    saved = _save_encoded(client.stylize_bytes([encoded], name)[0], target)
            version = f" version {client.last_version}" if client.last_version else ""
            print(f"Saved {saved} ({args.model}{version}, {time.perf_counter() - start:.2f} s)")
    return 0


def main(argv=None):
    """``nst-tf-client`` (``python -m serving.client``): returns the exit status (0 done, 2 error)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except NstError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
