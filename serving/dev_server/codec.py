"""TensorProto <-> numpy, with TF Serving's checks.

A request's cost must be bounded by its size: a TensorProto's declared shape is
checked against the data it carries and against ``--max_image_size``
(:class:`~serving.dev_server.limits.RequestLimits`) *before* anything is allocated
(a 24-byte proto can declare [1, 20000, 20000, 3]).
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from ..status import Code
from .errors import ServingError

MAX_TENSOR_BYTES = 2 ** 31

# The repeated field that holds the values of each dtype when tensor_content is empty
# (tensorflow/core/framework/tensor.proto), and how many entries one value takes.
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: ("float_val", 1), types_pb2.DT_DOUBLE: ("double_val", 1),
    types_pb2.DT_INT32: ("int_val", 1), types_pb2.DT_UINT8: ("int_val", 1), types_pb2.DT_INT16: ("int_val", 1),
    types_pb2.DT_INT8: ("int_val", 1), types_pb2.DT_UINT16: ("int_val", 1), types_pb2.DT_INT64: ("int64_val", 1),
    types_pb2.DT_UINT32: ("uint32_val", 1), types_pb2.DT_UINT64: ("uint64_val", 1),
    types_pb2.DT_BOOL: ("bool_val", 1), types_pb2.DT_HALF: ("half_val", 1), types_pb2.DT_BFLOAT16: ("half_val", 1),
    types_pb2.DT_COMPLEX64: ("scomplex_val", 2), types_pb2.DT_COMPLEX128: ("dcomplex_val", 2),
    types_pb2.DT_STRING: ("string_val", 1),
}


def dtype_name(enum):
    """TensorFlow's DataTypeString: ``float`` for DT_FLOAT, ``uint8``, ``string``..."""
    if not enum:
        return "invalid"
    name = tf.dtypes.as_dtype(enum).name
    return {"float32": "float", "float64": "double", "float16": "half"}.get(name, name)


def check_image_shape(name, shape, limits):
    """Refuses a rank-4 input with a height or width over ``limits.max_image_size``.

    Args:
        name: str. The input alias, for the message.
        shape: sequence of int. The declared or actual shape.
        limits: RequestLimits or None (no check).

    Raises:
        ServingError: INVALID_ARGUMENT.
    """
    if limits is not None and len(shape) == 4 and max(shape[1], shape[2]) > limits.max_image_size:
        raise ServingError(Code.INVALID_ARGUMENT, (
            f"Input '{name}' has shape {list(shape)}: images larger than {limits.max_image_size} pixels "
            "(--max_image_size) are refused"))


def _declared_size_matches(proto, count):
    """True when the proto carries exactly `count` values (or is empty and declares none)."""
    if proto.tensor_content:
        return proto.dtype != types_pb2.DT_STRING and len(proto.tensor_content) == count * tf.dtypes.as_dtype(
            proto.dtype).size
    field, per_value = _VALUE_FIELDS.get(proto.dtype, (None, 1))
    if field is None:
        return False
    return len(getattr(proto, field)) == count * per_value


def tensor_proto_to_array(proto, name, expected_dtype, index=0, limits=None):
    """Parses a request TensorProto as TF Serving does, checking its size before converting it.

    Args:
        proto: tensorflow.TensorProto.
        name: str. The input alias, for messages.
        expected_dtype: int. The signature's ``DataType`` enum for this input.
        index: int. Position of the input in the signature (TF Serving's ``arg[i]``).
        limits: RequestLimits or None. Image inputs larger than its ``max_image_size``
            are refused before any allocation.

    Returns:
        np.ndarray (object dtype of bytes for DT_STRING).

    Raises:
        ServingError: INVALID_ARGUMENT for another dtype, a malformed proto, a declared
            shape that the carried values do not fill exactly, an image larger than
            `limits` allow, or more than 2 GiB.
    """
    if proto.dtype != expected_dtype:
        raise ServingError(Code.INVALID_ARGUMENT, f"Expects arg[{index}] to be {dtype_name(expected_dtype)} but "
                                                  f"{dtype_name(proto.dtype)} is provided")
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {name}")
    count = int(np.prod(dims, dtype=np.float64))
    itemsize = 1 if expected_dtype == types_pb2.DT_STRING else tf.dtypes.as_dtype(expected_dtype).size
    if count * itemsize > MAX_TENSOR_BYTES:
        raise ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {name} has shape {dims}, more than the "
                                                  "2 GiB the development server accepts")
    # TF would fill missing values with the last one (or zeros): a few bytes could make gigabytes.
    if not _declared_size_matches(proto, count):
        raise ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {name} declares shape {dims} "
                                                  f"({count} values) but carries another number of values")
    check_image_shape(name, dims, limits)
    try:
        return tf.make_ndarray(proto)
    except Exception:  # noqa: BLE001 - malformed content raises several kinds.
        raise ServingError(Code.INVALID_ARGUMENT, f"tensor parsing error: {name}") from None
def array_to_tensor_proto(array, as_fields=False):
    """A response TensorProto.

    Args:
        array: np.ndarray (object dtype of bytes for strings).
        as_fields: bool. Numbers in the typed repeated fields (``int_val``...), as TF
            Serving's default ``AsProtoField``; False packs them in ``tensor_content``
            (TF Serving's ``AsProtoContent``), about 30 times faster to encode and parse
            for a 256 px image. Clients read both with ``tf.make_ndarray``.

    Returns:
        tensorflow.TensorProto; strings always in ``string_val``.
    """
    array = np.asarray(array)
    if array.dtype != object and not as_fields:
        return tf.make_tensor_proto(array)
    dtype = tf.dtypes.as_dtype(array.dtype) if array.dtype != object else tf.string
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    flat = array.ravel()
    if dtype == tf.string:
        proto.string_val.extend(flat.tolist())
    elif dtype in (tf.uint8, tf.int8, tf.int16, tf.int32, tf.uint16):
        proto.int_val.extend(flat.tolist())
    elif dtype == tf.int64:
        proto.int64_val.extend(flat.tolist())
    elif dtype == tf.float32:
        proto.float_val.extend(flat.tolist())
    elif dtype == tf.float64:
        proto.double_val.extend(flat.tolist())
    elif dtype == tf.bool:
        proto.bool_val.extend(flat.tolist())
    else:
        return tf.make_tensor_proto(array)
    return proto


def shape_compatible(shape_proto, shape):
    if shape_proto.unknown_rank:
        return True
    dims = [d.size for d in shape_proto.dim]
    return len(dims) == len(shape) and all(d < 0 or d == s for d, s in zip(dims, shape))


def shape_text(shape_proto):
    if shape_proto.unknown_rank:
        return "[?]"
    return "[" + ",".join("?" if d.size < 0 else str(d.size) for d in shape_proto.dim) + "]"

