"""nst_tf.tflite and ``export --format tflite``: the TFLite model matches the Keras model at any size.

Tolerances, as PSNR of the TFLite output against the Keras output on [0, 255] pixels
(seeded random weights with random biases, gammas and betas; noise input): float32 >= 90 dB
(float rounding only; measured 125-129 dB), float16 >= 50 dB (weights rounded to 11
significant bits; measured 70-74 dB), int8 dynamic range >= 30 dB (8-bit weights and
activations; measured about 45 dB).  Sizes: 24 x 32 (multiples of 4) and 21 x 30 (not).
The networks have a 32-channel trunk because dynamic-range quantization leaves weight
tensors under 1024 elements in float32: the residual convolutions (3 x 3 x 32 x 32) are
quantized, so the int8 bound tests real quantization.
"""

import numpy as np
import pytest

from helpers import random_transformer
from nst_tf import cli, tflite
from nst_tf.errors import ConfigError

SIZES = ((24, 32), (21, 30))
MIN_PSNR = {"float32": 90.0, "float16": 50.0, "int8": 30.0}
STYLES = ["a", "b", "c"]


def psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def image(height, width, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def single():
    return random_transformer(filters=(4, 8, 32), num_residual_blocks=1)


@pytest.fixture(scope="module")
def multi():
    return random_transformer(seed=3, filters=(4, 8, 32), num_residual_blocks=1, style_names=STYLES)


@pytest.fixture(scope="module")
def flatbuffers(single):
    return {q: tflite.convert(single, q) for q in tflite.QUANTIZATIONS}


@pytest.mark.parametrize("quantization", tflite.QUANTIZATIONS)
def test_single_style_matches_keras_at_two_sizes(single, flatbuffers, quantization):
    interpreter = tflite.load_interpreter(flatbuffers[quantization])
    for height, width in SIZES:
        x = image(height, width)
        out = tflite.stylize(interpreter, x)
        assert out.shape == (1, height, width, 3) and out.dtype == np.float32
        value = psnr(out, single(x))
        assert value >= MIN_PSNR[quantization], f"{quantization} {height}x{width}: PSNR {value:.1f} dB"


def test_cli_restates_the_quantizations():
    assert cli._TFLITE_QUANTIZATIONS == tflite.QUANTIZATIONS


def test_quantization_shrinks_the_file(flatbuffers):
    sizes = {q: len(b) for q, b in flatbuffers.items()}
    assert sizes["float16"] < sizes["float32"] and sizes["int8"] < sizes["float16"], sizes


def test_dynamic_size_through_resize_tensor_input(single, flatbuffers):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffers["float32"])
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [1, -1, -1, 3]
    for height, width in SIZES:
        x = image(height, width, seed=height)
        interpreter.resize_tensor_input(detail["index"], [1, height, width, 3])
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert psnr(out, single(x)) >= MIN_PSNR["float32"]


def test_builtin_ops_only(flatbuffers):
    for quantization, flatbuffer in flatbuffers.items():
        ops = {op["op_name"] for op in _ops(flatbuffer)}
        assert not any(name.startswith("Flex") or name == "CUSTOM" for name in ops), (quantization, ops)
        assert "CONV_2D" in ops and "MIRROR_PAD" in ops


def _ops(flatbuffer):
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    return interpreter._get_ops_details()


@pytest.mark.parametrize("quantization", tflite.QUANTIZATIONS)
def test_multi_style_weights_select_and_blend(multi, quantization):
    interpreter = tflite.load_interpreter(tflite.convert(multi, quantization))
    for height, width in SIZES:
        x = image(height, width, seed=7)
        for weights in ([1, 0, 0], [0, 0, 1], [0.2, 0.5, 0.3]):
            w = np.asarray([weights], np.float32)
            value = psnr(tflite.stylize(interpreter, x, w), multi(x, style=w))
            assert value >= MIN_PSNR[quantization], f"{quantization} {height}x{width} {weights}: {value:.1f} dB"
    first, last = (tflite.stylize(interpreter, image(24, 32), np.eye(3, dtype=np.float32)[k]) for k in (0, 2))
    assert np.abs(first - last).max() > 1.0  # The weights input really selects the style.


def test_style_weights_required_exactly_for_multi_style(multi, flatbuffers):
    with pytest.raises(ConfigError, match="multi-style"):
        tflite.stylize(tflite.load_interpreter(tflite.convert(multi)), image(8, 8))
    with pytest.raises(ConfigError, match="single-style"):
        tflite.stylize(tflite.load_interpreter(flatbuffers["float32"]), image(8, 8), [1.0])


def test_bad_quantization_and_output(single, tmp_path):
    with pytest.raises(ConfigError, match=r"quantization.*Received: quantization='int4'"):
        tflite.convert(single, "int4")
    with pytest.raises(ConfigError, match=r"\.tflite"):
        tflite.export_tflite(single, tmp_path / "model.bin")
    assert list(tmp_path.iterdir()) == []


def test_export_tflite_writes_one_file_atomically(multi, tmp_path):
    result = tflite.export_tflite(multi, tmp_path / "out" / "m.tflite", "float16")
    assert result.path.is_file() and result.size_bytes == result.path.stat().st_size
    assert result.style_names == STYLES
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.tflite"]  # No temporary file left.


def test_cli_exports_tflite(multi, tmp_path, capsys):
    model = tmp_path / "tiny.keras"
    multi.save(model)
    assert cli.export_main([str(model), "--format", "tflite", "--tflite-quantization", "int8"]) == 0
    written = tmp_path / "tiny_int8.tflite"
    assert written.is_file()
    assert "style_weights [1, 3]" in capsys.readouterr().out
    out = tflite.stylize(tflite.load_interpreter(written), image(21, 30), [0.0, 1.0, 0.0])
    assert psnr(out, multi(image(21, 30), style=np.asarray([[0.0, 1.0, 0.0]], np.float32))) >= MIN_PSNR["int8"]
    assert cli.main(["export", str(model), "--format", "tflite", "--output", str(tmp_path / "x.tflite")]) == 0
    assert (tmp_path / "x.tflite").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--format", "onnx"], "invalid choice: 'onnx'"),
    (["--format", "tflite", "--tflite-quantization", "int4"], "invalid choice: 'int4'"),
    (["--tflite-quantization", "int8"], "applies to --format tflite only"),
    (["--format", "tflite", "--output", "OUT/model.keras"], "must be a .tflite file"),
    (["--format", "tflite", "--output", "MODEL"], "would overwrite an input"),
])
def test_cli_bad_input_one_line_exit_2_no_file(multi, tmp_path, capsys, flags, message):
    model = tmp_path / "tiny.keras"
    multi.save(model)
    flags = [f.replace("OUT", str(tmp_path)).replace("MODEL", str(model)) for f in flags]
    try:
        code = cli.export_main([str(model), *flags])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.keras"]
