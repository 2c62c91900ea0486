"""TF Serving's status vocabulary, shared by the clients and the development server.

gRPC status codes map to HTTP statuses as TF Serving's REST server maps them
(``model_servers/http_server.cc``, ``ToHTTPStatusCode``); version states are the
``tensorflow.serving.ModelVersionStatus.State`` enum of tensorflow-serving-api.

``State`` and ``ModelVersionStatus`` are imported on first use (PEP 562): the protos of
tensorflow-serving-api import TensorFlow, which the REST client and ``--help`` never need.
"""

import grpc

Code = grpc.StatusCode


def __getattr__(name):
    """``ModelVersionStatus`` (the proto message) and ``State``, its enum: ``State.Value("AVAILABLE")``,
    ``State.Name(30)``; also ``ModelVersionStatus.START``, ``LOADING``, ``AVAILABLE``, ``UNLOADING``, ``END``."""
    if name not in ("ModelVersionStatus", "State"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

    return ModelVersionStatus if name == "ModelVersionStatus" else ModelVersionStatus.State

HTTP_STATUS = {
    Code.OK: 200, Code.CANCELLED: 499, Code.UNKNOWN: 500, Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504, Code.NOT_FOUND: 404, Code.ALREADY_EXISTS: 409, Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429, Code.FAILED_PRECONDITION: 400, Code.ABORTED: 409, Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501, Code.INTERNAL: 500, Code.UNAVAILABLE: 503, Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}
"""gRPC status code -> HTTP status of TF Serving's REST API."""

_CODE_OF_HTTP = {}
for _code, _http in HTTP_STATUS.items():  # The first code listed for a status is the one a client reports,
    _CODE_OF_HTTP.setdefault(_http, _code)
# except where several codes share a status: a 500 is the server's fault, a 409 a lost race. The
# development server's HTTP-level answers (timeout, chunked body, body too large) map as gRPC would.
_CODE_OF_HTTP.update({500: Code.INTERNAL, 409: Code.ABORTED, 408: Code.DEADLINE_EXCEEDED,
                      411: Code.INVALID_ARGUMENT, 413: Code.RESOURCE_EXHAUSTED})
_CODE_OF_VALUE = {code.value[0]: code for code in Code}


def code_of_http(status):
    """The gRPC status code of an HTTP status (``404 -> NOT_FOUND``; unknown statuses: ``UNKNOWN``)."""
    return _CODE_OF_HTTP.get(status, Code.UNKNOWN)


def code_of_value(value):
    """The ``grpc.StatusCode`` of a numeric ``tensorflow.error.Code`` (``5 -> NOT_FOUND``)."""
    return _CODE_OF_VALUE.get(value, Code.UNKNOWN)


STATE_NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}
"""``ModelVersionStatus.State`` numbers and names, without importing the proto (and TensorFlow)."""


def state_name(value):
    """The name of a ``ModelVersionStatus.State`` value (``30 -> "AVAILABLE"``), or the number as text."""
    return STATE_NAMES.get(value, str(value))
