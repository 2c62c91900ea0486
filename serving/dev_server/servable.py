"""One loaded SavedModel version: its signatures, TF Serving's request checks, warm-up replay."""

import os
import pathlib

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from ..status import Code, code_of_value
from .codec import check_image_shape, shape_compatible, shape_text, tensor_proto_to_array
from .errors import ServingError, clean_tf_message

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit.


class Servable:
    """One loaded version of a model: its SignatureDefs and callable signatures.

    Args:
        name: str. Model name.
        version: int. Version number.
        path: pathlib.Path. The version folder (a SavedModel).
        limits: limits.RequestLimits or None. Size limits of image inputs.

    Raises:
        Exception: whatever ``tf.saved_model.load`` raises for a broken folder.
    """

    def __init__(self, name, version, path, limits=None):
        self.name, self.version, self.path = name, version, pathlib.Path(path)
        self.limits = limits
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((self.path / "saved_model.pb").read_bytes())
        graphs = [g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags]
        if not graphs:
            raise ValueError("the SavedModel has no MetaGraph tagged 'serve'")
        self.signature_defs = dict(graphs[0].signature_def)
        self._loaded = tf.saved_model.load(str(self.path), tags=["serve"])
        self.functions = dict(self._loaded.signatures)

    def predict(self, signature_name, inputs, output_filter=()):
        """Runs a signature on numpy inputs, with TF Serving's request checks.

        Args:
            signature_name: str. Empty means ``serving_default``.
            inputs: dict of input alias -> np.ndarray of the signature's dtype.
            output_filter: sequence of output aliases to return; empty returns all.

        Returns:
            (signature name, dict of output alias -> np.ndarray).

        Raises:
            ServingError: FAILED_PRECONDITION for an unknown signature,
                INVALID_ARGUMENT for wrong inputs or an error raised in the graph
                (other TensorFlow errors keep their code).
        """
        signature_name = signature_name or DEFAULT_SIGNATURE
        signature = self.signature_defs.get(signature_name)
        function = self.functions.get(signature_name)
        if signature is None or function is None:
            raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.')
        expected, sent = sorted(signature.inputs), sorted(inputs)
        if len(sent) != len(expected):
            raise ServingError(Code.INVALID_ARGUMENT, (
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sent)}}}) != "
                f"len({{{','.join(expected)}}}). Sent extra: {{{','.join(sorted(set(sent) - set(expected)))}}}. "
                f"Missing but required: {{{','.join(sorted(set(expected) - set(sent)))}}}."))
        for alias in sent:
            if alias not in signature.inputs:
                raise ServingError(Code.INVALID_ARGUMENT, f"input tensor alias not found in signature: {alias}. "
                                                          f"Inputs expected to be in the set {{{','.join(expected)}}}.")
            info = signature.inputs[alias]
            array = inputs[alias]
            if not shape_compatible(info.tensor_shape, array.shape):
                raise ServingError(Code.INVALID_ARGUMENT, (
                    f"Input '{alias}' has shape {list(array.shape)}, which is not compatible with the "
                    f"signature's {shape_text(info.tensor_shape)}"))
            check_image_shape(alias, array.shape, self.limits)
        aliases = list(output_filter) or sorted(signature.outputs)
        for alias in aliases:
            if alias not in signature.outputs:
                raise ServingError(Code.INVALID_ARGUMENT, (
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{','.join(sorted(signature.outputs))}}}."))
        if len(set(aliases)) != len(aliases):
            raise ServingError(Code.INVALID_ARGUMENT, f"duplicate output tensor alias: {aliases}")
        feeds = {alias: tf.constant(inputs[alias], dtype=tf.dtypes.as_dtype(signature.inputs[alias].dtype))
                 for alias in sent}
        try:
            outputs = function(**feeds)
        except tf.errors.OpError as error:
            raise ServingError(code_of_value(error.error_code), clean_tf_message(error.message)) from None
        except (TypeError, ValueError) as error:
            raise ServingError(Code.INVALID_ARGUMENT, " ".join(str(error).split())[:500]) from None
        return signature_name, {alias: outputs[alias].numpy() for alias in aliases}

    def warm_up(self):
        """Replays ``assets.extra/tf_serving_warmup_requests``; returns the number of requests run.

        Raises:
            ServingError: a warm-up request failed (the version then fails to load, as in TF Serving).
        """
        path = self.path / WARMUP_FILE
        if not path.is_file():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                raise ServingError(Code.UNIMPLEMENTED, "the development server replays only PredictLog warm-up records")
            request = log.predict_log.request
            signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            signature = self.signature_defs.get(signature_name)
            if signature is None:
                raise ServingError(Code.FAILED_PRECONDITION, f'Serving signature key "{signature_name}" not found.')
            inputs = {alias: tensor_proto_to_array(proto, alias, signature.inputs[alias].dtype if alias in
                                                   signature.inputs else proto.dtype)
                      for alias, proto in request.inputs.items()}
            self.predict(signature_name, inputs, request.output_filter)
            count += 1
        return count

