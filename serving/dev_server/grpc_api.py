"""gRPC front end: ``tensorflow.serving.PredictionService`` and ``ModelService``."""

import logging
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from ..status import Code
from .errors import ServingError
from .service import get_model_metadata, get_model_status, predict

logger = logging.getLogger("dev_server")
MAX_SEND_BYTES = 2 ** 31 - 1  # TF Serving sets INT_MAX on its gRPC server.


def _grpc_call(function, manager, request, context):
    try:
        return function(manager, request)
    except ServingError as error:
        context.abort(error.code, error.message)
    except Exception as error:  # noqa: BLE001 - a bug here must not kill the server.
        logger.exception("Internal error")
        context.abort(Code.INTERNAL, f"{type(error).__name__}: {error}")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``: Predict and GetModelMetadata."""

    def __init__(self, manager):
        self.manager = manager

    def Predict(self, request, context):  # noqa: N802 - gRPC method name.
        return _grpc_call(predict, self.manager, request, context)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _grpc_call(get_model_metadata, self.manager, request, context)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: GetModelStatus."""

    def __init__(self, manager):
        self.manager = manager

    def GetModelStatus(self, request, context):  # noqa: N802
        return _grpc_call(get_model_status, self.manager, request, context)



def make_grpc_server(manager, threads=16):
    """A grpc.Server with both services, its receive limit taken from ``manager.limits``.

    A request larger than ``manager.limits.grpc_bytes`` is refused with
    ``RESOURCE_EXHAUSTED`` by gRPC itself, before it is read into memory.

    Args:
        manager: ModelManager (``limits`` None: 2 GiB - 1, as TF Serving).
        threads: int. Worker threads.

    Returns:
        grpc.Server, not started, without ports.
    """
    receive = manager.limits.grpc_bytes if manager.limits is not None else MAX_SEND_BYTES
    options = [("grpc.max_send_message_length", MAX_SEND_BYTES),
               ("grpc.max_receive_message_length", receive),
               ("grpc.so_reuseport", 0)]  # A port in use is an error, not silently shared.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    return server
