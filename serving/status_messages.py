"""The messages of TF Serving's ``ModelService.GetModelStatus``, without TensorFlow.

tensorflow-serving-api's generated modules import TensorFlow's protos, and so TensorFlow
itself (seconds of start-up), which a status check needs nothing of. These are the same
messages, field for field and number for number, of ``tensorflow_serving/apis/model.proto``
(``ModelSpec``), ``get_model_status.proto`` and ``util/status.proto``, held in a private
descriptor pool so that they never clash with the generated modules in one process.  The
wire format is the same: ``google.protobuf.Int64Value`` is a message whose field 1 is an
int64, and an enum is a varint (``tensorflow.error.Code`` is read as its number).
``tests/test_serving.py`` checks them against tensorflow-serving-api's descriptors.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

GET_MODEL_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
"""gRPC method path of ``GetModelStatus``."""

_FILE = """
name: "nst_tf_serving/get_model_status.proto"
package: "nst_tf_serving.status"
syntax: "proto3"
message_type {
  name: "Int64Value"
  field { name: "value" number: 1 label: LABEL_OPTIONAL type: TYPE_INT64 }
}
message_type {
  name: "ModelSpec"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "version" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".nst_tf_serving.status.Int64Value" oneof_index: 0 }
  field { name: "version_label" number: 4 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
  field { name: "signature_name" number: 3 label: LABEL_OPTIONAL type: TYPE_STRING }
  oneof_decl { name: "version_choice" }
}
message_type {
  name: "GetModelStatusRequest"
  field { name: "model_spec" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".nst_tf_serving.status.ModelSpec" }
}
message_type {
  name: "StatusProto"
  field { name: "error_code" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
  field { name: "error_message" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
}
message_type {
  name: "ModelVersionStatus"
  field { name: "version" number: 1 label: LABEL_OPTIONAL type: TYPE_INT64 }
  field { name: "state" number: 2 label: LABEL_OPTIONAL type: TYPE_INT32 }
  field { name: "status" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".nst_tf_serving.status.StatusProto" }
}
message_type {
  name: "GetModelStatusResponse"
  field { name: "model_version_status" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".nst_tf_serving.status.ModelVersionStatus" }
}
"""

_pool = descriptor_pool.DescriptorPool()
_pool.Add(text_format.Parse(_FILE, descriptor_pb2.FileDescriptorProto()))


def _message(name):
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"nst_tf_serving.status.{name}"))


ModelSpec = _message("ModelSpec")
GetModelStatusRequest = _message("GetModelStatusRequest")
GetModelStatusResponse = _message("GetModelStatusResponse")
