"""nst_tf.signatures: the serving contract's names, readable without TensorFlow."""

import ast

from helpers import ROOT  # noqa: I001
from nst_tf import signatures


def test_the_module_imports_nothing():
    # So serving/client.py reads the names without TensorFlow (test_layering imports it in a fresh process).
    tree = ast.parse((ROOT / "nst_tf" / "signatures.py").read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_the_multi_style_signatures_extend_the_single_style_ones():
    multi = signatures.MULTI_STYLE_SIGNATURES
    for name, (single_input, output) in signatures.SIGNATURES.items():
        inputs, multi_output = multi[name]
        assert multi_output == output and inputs == (single_input, signatures.INPUT_STYLE)
    assert set(multi) - set(signatures.SIGNATURES) == {signatures.SIGNATURE_BLEND, signatures.SIGNATURE_STYLE_NAMES}


def test_names_follow_tf_serving_rules():
    import tensorflow as tf

    assert signatures.SIGNATURE_IMAGES == tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
    # TF Serving's REST API returns an output as {"b64": ...} exactly when its name ends in "_bytes".
    assert signatures.OUTPUT_BYTES.endswith("_bytes") and signatures.INPUT_BYTES.endswith("_bytes")
    assert not any(name.endswith("_bytes") for name in (signatures.OUTPUT_IMAGES, signatures.OUTPUT_STYLE_NAMES))
