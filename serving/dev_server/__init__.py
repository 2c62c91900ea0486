"""A development stand-in for ``tensorflow_model_server``: TF Serving's APIs over ``saved_models/``.

For development and tests only; production runs TensorFlow Serving (``serving/README.md``).
``tensorflow_model_server`` ships as a Docker image or from an apt repository, neither of
which these machines can use, so this module implements the part of TF Serving that the
style service needs, with grpcio and tensorflow-serving-api's protos:

* gRPC ``tensorflow.serving.PredictionService``: ``Predict``, ``GetModelMetadata``;
  ``tensorflow.serving.ModelService``: ``GetModelStatus``.  Other methods answer
  ``UNIMPLEMENTED``.
* REST: ``GET /v1/models/<name>[/versions/<v>|/labels/<l>]`` (status),
  ``GET .../metadata``, ``POST .../<name>[/versions/<v>|/labels/<l>]:predict`` with the
  row (``instances``) and columnar (``inputs``) formats, ``{"b64": ...}`` strings in and
  out (outputs whose name ends in ``_bytes``), errors as ``{"error": "..."}``; bad HTTP
  (``Content-Length``, chunked bodies, slow clients) answered 400, 411, 413 or 408.
* The same model folders and config: ``--model_config_file`` (a text
  ``ModelServerConfig`` with ``model_config_list``; version policies ``latest``, ``all``,
  ``specific``; ``version_labels``) or ``--model_name`` + ``--model_base_path``.  Version
  folders are polled every ``--file_system_poll_wait_seconds``: new versions load while
  serving (then older ones outside the policy unload), and the highest available version
  answers requests that name none.  Version folders are ASCII digits; a folder loads once
  it looks complete and unchanged between two polls, and a failed load is retried when
  its files change.  Warm-up records
  (``assets.extra/tf_serving_warmup_requests``) are replayed on load.
* TF Serving's status codes and messages: unknown model or version ``NOT_FOUND``
  ("Servable not found for request: Latest(name)"), unknown label and malformed
  requests ``INVALID_ARGUMENT``, unknown signature ``FAILED_PRECONDITION`` (REST: 400),
  errors raised inside the graph keep their code.

Differences from TF Serving: requests run one by one per thread, never batched
(``--enable_batching`` is accepted and ignored); listens on 127.0.0.1 unless ``--host``
says otherwise; ``--model_base_path_prefix DIR`` serves the ``base_path`` ``/models/x``
of the Docker config from ``DIR/x``; the model config is read once; numeric outputs are
packed in ``tensor_content`` (TF Serving: typed fields such as ``int_val``; clients read
both with ``tf.make_ndarray``); integer JSON values
outside the input's range are refused rather than wrapped; tensors over 2 GiB are
refused, and so are tensors whose declared shape the data does not fill exactly;
``--max_image_size`` (the export's ``--max-image-size``) bounds image inputs before
they are converted, the gRPC receive size (:class:`~serving.dev_server.limits.RequestLimits`)
and the REST body size.  Like TF Serving it knows only SavedModels, which it loads with
``tf.saved_model.load``; its one use of nst_tf is :func:`nst_tf.cli.import_tensorflow`,
which imports TensorFlow without its start-up lines once the flags are parsed.

Modules: ``limits`` (request limits), ``codec`` (TensorProto <-> numpy), ``servable``
(one loaded version), ``manager`` (versions of the configured models), ``service``
(Predict, GetModelMetadata, GetModelStatus), ``grpc_api``, ``rest_api``, ``main``
(flags, servers).  The names below that need TensorFlow are imported on first use.

Usage::

    nst-tf-dev-server --model_config_file serving/models.config \\
        --model_base_path_prefix saved_models --port 8500 --rest_api_port 8501

(``python -m nst_tf_serving.dev_server``, or ``python -m serving.dev_server`` from the
repository root, is the same.)

Sources: tensorflow/serving ``model_servers/`` (``http_rest_api_handler.cc``,
``http_server.cc`` ``ToHTTPStatusCode``, ``get_model_status_impl.cc``),
``servables/tensorflow/predict_util.cc``, ``get_model_metadata_impl.cc``,
``util/json_tensor.cc``; https://www.tensorflow.org/tfx/serving/api_rest.
"""

import importlib

from .errors import ServingError
from .limits import RequestLimits
from .main import DevModelServer, build_parser, load_config, main

# Name -> its module; these import TensorFlow, so they load on first use (PEP 562).
_WITH_TENSORFLOW = {
    "ModelManager": "manager", "Servable": "servable", "array_to_tensor_proto": "codec",
    "tensor_proto_to_array": "codec", "make_json_predict_response": "rest_api", "parse_json_predict": "rest_api",
}

__all__ = ["DevModelServer", "ModelManager", "RequestLimits", "Servable", "ServingError", "array_to_tensor_proto",
           "build_parser", "load_config", "main", "make_json_predict_response", "parse_json_predict",
           "tensor_proto_to_array"]


def __getattr__(name):
    module = _WITH_TENSORFLOW.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
