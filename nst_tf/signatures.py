"""Names of the serving signatures and their tensors: the contract of an exported style network.

One leaf module, read by the exporter (:mod:`nst_tf.export`), the loader of exported
models (:class:`nst_tf.stylizer.SavedModelStylizer`) and the serving client
(``serving/client.py``).  It imports nothing, so a client can read the names without
loading TensorFlow.

Every exported SavedModel has one signature per input type, as tensorflow/models
``official/vision/serving`` has (``image_tensor`` and ``image_bytes``):
``serving_default`` takes uint8 pixels, ``stylize_bytes`` encoded image files.  A
multi-style network (conditional instance normalization, Dumoulin, Shlens, Kudlur,
"A Learned Representation for Artistic Style", ICLR 2017) adds a style input to both,
a ``stylize_blend`` signature of blend weights, and a ``style_names`` signature that
names its styles, so clients discover them from the model.

Sources: TF Serving "RESTful API" guide (https://www.tensorflow.org/tfx/serving/api_rest)
and tensorflow/serving ``tensorflow_serving/util/json_tensor.cc``: an output whose name
ends in ``_bytes`` is returned as ``{"b64": ...}``; ``serving_default`` is
``tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY``.
"""

SIGNATURE_IMAGES = "serving_default"
"""Signature of uint8 pixels (``tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY``)."""
SIGNATURE_BYTES = "stylize_bytes"
"""Signature of encoded image files."""
INPUT_IMAGES = "images"
"""Input of ``serving_default``: uint8 ``[batch, height, width, 3]``, RGB."""
OUTPUT_IMAGES = "stylized_images"
"""Output of ``serving_default``: uint8 ``[batch, height, width, 3]``, RGB."""
INPUT_BYTES = "image_bytes"
"""Input of ``stylize_bytes``: string ``[batch]``, each a JPEG, PNG, GIF, BMP or WebP file."""
OUTPUT_BYTES = "stylized_image_bytes"
"""Output of ``stylize_bytes``: string ``[batch]``, each a PNG (or JPEG) file."""
SIGNATURES = {
    SIGNATURE_IMAGES: (INPUT_IMAGES, OUTPUT_IMAGES),
    SIGNATURE_BYTES: (INPUT_BYTES, OUTPUT_BYTES),
}
"""``{signature: (input name, output name)}`` of every exported SavedModel (the image input)."""

SIGNATURE_BLEND = "stylize_blend"
"""Multi-style networks: signature of uint8 pixels and blend weights over the styles."""
SIGNATURE_STYLE_NAMES = "style_names"
"""Multi-style networks: signature that names the styles, for discovery by clients."""
INPUT_STYLE = "style"
"""Multi-style input of ``serving_default`` and ``stylize_bytes``: string ``[batch]`` style names
(or ``[1]``, applied to the whole batch)."""
INPUT_STYLE_WEIGHTS = "style_weights"
"""Input of ``stylize_blend``: float32 ``[batch or 1, num_styles]`` blend weights, used as given."""
INPUT_STYLE_INDEX = "style_index"
"""Input of ``style_names``: int32 ``[k]`` style indices, 0 to num_styles - 1."""
OUTPUT_STYLE_NAMES = "style_names"
"""Output of ``style_names``: string ``[k]``, the names of the given indices."""
MULTI_STYLE_SIGNATURES = {
    SIGNATURE_IMAGES: ((INPUT_IMAGES, INPUT_STYLE), OUTPUT_IMAGES),
    SIGNATURE_BYTES: ((INPUT_BYTES, INPUT_STYLE), OUTPUT_BYTES),
    SIGNATURE_BLEND: ((INPUT_IMAGES, INPUT_STYLE_WEIGHTS), OUTPUT_IMAGES),
    SIGNATURE_STYLE_NAMES: ((INPUT_STYLE_INDEX,), OUTPUT_STYLE_NAMES),
}
"""``{signature: (input names, output name)}`` of a multi-style network's SavedModel.

The number of styles N is the static last dimension of ``stylize_blend``'s
``style_weights`` input (GetModelMetadata); ``style_names`` with indices ``0..N-1``
returns their names, so clients need no list of their own."""
