"""TF Serving's three calls on a ModelManager, shared by the gRPC and REST front ends."""

from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from ..status import Code
from .codec import array_to_tensor_proto, tensor_proto_to_array
from .errors import ServingError
from .servable import DEFAULT_SIGNATURE


def predict(manager, request):
    """Predict on a ``PredictRequest``; returns a ``PredictResponse``. Raises ServingError."""
    servable = manager.servable(request.model_spec)
    signature = servable.signature_defs.get(request.model_spec.signature_name or DEFAULT_SIGNATURE)
    inputs = {}
    for index, (alias, proto) in enumerate(sorted(request.inputs.items())):
        expected = signature.inputs[alias].dtype if signature is not None and alias in signature.inputs else proto.dtype
        inputs[alias] = tensor_proto_to_array(proto, alias, expected, index, manager.limits)
    name, outputs = servable.predict(request.model_spec.signature_name, inputs, request.output_filter)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = name
    for alias, array in outputs.items():
        response.outputs[alias].CopyFrom(array_to_tensor_proto(array))
    return response


def get_model_metadata(manager, request):
    """GetModelMetadata on a request proto; returns the response. Raises ServingError."""
    if not request.HasField("model_spec"):
        raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    if not request.metadata_field:
        raise ServingError(Code.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != "signature_def":
            raise ServingError(Code.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
    servable = manager.servable(request.model_spec)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, value in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(value)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signatures)
    return response


def get_model_status(manager, request):
    """GetModelStatus on a request proto; returns the response. Raises ServingError."""
    if not request.HasField("model_spec"):
        raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state, code, message in manager.status(request.model_spec):
        status = response.model_version_status.add(version=version, state=state)
        status.status.error_code = code.value[0]
        status.status.error_message = message
    return response

