"""nst_tf.export and scripts/export.py: TF Serving layout, versions, signatures, guards, warm-up."""

import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from helpers import ROOT  # noqa: I001
from nst_tf import export, signatures
from nst_tf.errors import ConfigError, WeightsError
from nst_tf.images import to_uint8
from nst_tf.transformer import TransformerNet

MAX = 64


def tiny_net(seed=0):
    keras.utils.set_random_seed(seed)
    model = TransformerNet(filters=(4, 8, 8), num_residual_blocks=1)
    model.build((None, None, None, 3))
    return model


def encode(array, fmt="PNG", mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=fmt)
    return buffer.getvalue()


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="module")
def net():
    return tiny_net()


@pytest.fixture(scope="module")
def exported(net, tmp_path_factory):
    base = tmp_path_factory.mktemp("export") / "tiny"
    result = export.export_model(net, base, max_image_size=MAX, warmup_size=16)
    return result, tf.saved_model.load(str(result.path))


@pytest.mark.slow
def test_layout_versions_and_no_temporary_folders(net, tmp_path):
    base = tmp_path / "styles" / "tiny"
    first = export.export_model(net, base, max_image_size=MAX, warmup_size=0)
    second = export.export_model(net, base, max_image_size=MAX, warmup_size=8)
    assert (first.version, second.version) == (1, 2) and second.path == base / "2"
    for name in ("saved_model.pb", "variables/variables.index", export.WARMUP_FILE):
        assert (second.path / name).is_file(), name
    assert not (first.path / export.WARMUP_FILE).exists()  # warmup_size=0.
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # The temporary folder is gone.
    stamp = (base / "2" / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"Version 2 already exists.*next one \(3\)"):
        export.export_model(net, base, version=2, warmup_size=0)
    assert (base / "2" / "saved_model.pb").stat().st_mtime_ns == stamp
    assert export.export_model(net, base, version=7, warmup_size=0).version == 7
    (base / ".export-crashed.tmp").mkdir()  # A crashed export's leftovers are not a version.
    (base / "notes").mkdir()
    assert export.list_versions(base) == [1, 2, 7] and export.next_version(base) == 8


def test_publish_skips_a_version_published_meanwhile(tmp_path, monkeypatch):
    base = tmp_path / "m"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"other export")
    temp = base / ".export-x.tmp"
    temp.mkdir()
    (temp / "saved_model.pb").write_bytes(b"mine")
    answers = iter([1, 2])  # A stale listing says 1 is free; another export already took it.
    monkeypatch.setattr(export, "next_version", lambda _: next(answers))
    assert export._publish(temp, base, None) == 2
    assert (base / "1" / "saved_model.pb").read_bytes() == b"other export"
    assert (base / "2" / "saved_model.pb").read_bytes() == b"mine"


FRESH_PROCESS = textwrap.dedent("""
    import json, pathlib, sys
    import numpy as np, tensorflow as tf
    loaded, folder = tf.saved_model.load(sys.argv[1]), pathlib.Path(sys.argv[2])

    def specs_of(specs):
        return {k: [v.dtype.name, v.shape.as_list()] for k, v in specs.items()}

    specs = {name: {"inputs": specs_of(fn.structured_input_signature[1]), "outputs": specs_of(fn.structured_outputs)}
             for name, fn in loaded.signatures.items()}
    images = loaded.signatures["serving_default"](images=np.load(folder / "batch.npy"))["stylized_images"]
    files = [bytes.fromhex(h) for h in json.loads((folder / "files.json").read_text())]
    encoded = loaded.signatures["stylize_bytes"](image_bytes=tf.constant(files))["stylized_image_bytes"]
    np.save(folder / "images.npy", images.numpy())
    imported = any(m == "nst_tf" or m.startswith("nst_tf.") for m in sys.modules)
    (folder / "out.json").write_text(json.dumps({"specs": specs, "encoded": [e.hex() for e in encoded.numpy()],
                                                "nst_tf_imported": imported}))
""")


@pytest.mark.slow
def test_savedmodel_runs_without_nst_tf_and_matches_keras(net, exported, tmp_path):
    result, _ = exported
    batch = pixels((2, 20, 24, 3))
    rgba = np.concatenate([pixels((12, 16, 3), 1), np.where(pixels((12, 16, 1), 2) > 128, 255, 0).astype(np.uint8)], -1)
    files = [encode(batch[0]), encode(pixels((28, 16, 3), 3), "JPEG"), encode(pixels((8, 8), 4)), encode(rgba)]
    np.save(tmp_path / "batch.npy", batch)
    (tmp_path / "files.json").write_text(json.dumps([f.hex() for f in files]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(result.path), str(tmp_path)], cwd=tmp_path, env=env,
                   check=True, timeout=300, capture_output=True)
    out = json.loads((tmp_path / "out.json").read_text())
    assert not out["nst_tf_imported"]
    assert out["specs"] == {
        "serving_default": {"inputs": {"images": ["uint8", [None, None, None, 3]]},
                            "outputs": {"stylized_images": ["uint8", [None, None, None, 3]]}},
        "stylize_bytes": {"inputs": {"image_bytes": ["string", [None]]},
                          "outputs": {"stylized_image_bytes": ["string", [None]]}}}
    served = np.load(tmp_path / "images.npy")
    assert served.dtype == np.uint8 and served.shape == batch.shape
    expected = to_uint8(net(batch.astype(np.float32)))
    assert np.abs(served.astype(int) - expected).max() <= 1
    for data, raw in zip(out["encoded"], files):
        output = bytes.fromhex(data)
        assert output.startswith(b"\x89PNG")
        source = Image.open(io.BytesIO(raw))
        if source.mode == "RGBA":  # Alpha composited on white, as nst_tf.images.load_image does.
            rgba_pixels = np.asarray(source, np.float32)
            alpha = rgba_pixels[..., 3:] / 255
            source_pixels = rgba_pixels[..., :3] * alpha + 255 * (1 - alpha)
        else:  # TensorFlow's own decoder, as in the signature (JPEG decoders differ by a level or two).
            source_pixels = tf.io.decode_image(raw, channels=3).numpy().astype(np.float32)
        expected = to_uint8(net(source_pixels[None]))[0]
        assert decode(output).shape == expected.shape
        assert np.abs(decode(output).astype(int) - expected).max() <= 1


def test_savedmodel_runs_the_inference_graph_without_xla(exported):
    _, loaded = exported
    graph_def = loaded.signatures[signatures.SIGNATURE_IMAGES].graph.as_graph_def()
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    ops = {node.op for node in nodes}
    # nst_tf.inference: oneDNN's batch norm as instance norm, the blocked head; a real tensorflow_model_server
    # runs no XLA JIT by default, so nothing may require it.
    assert {"FusedBatchNormV3", "DepthToSpace"} <= ops
    assert not any(op.startswith("Xla") for op in ops)
    assert not any(function.attr["_XlaMustCompile"].b for function in graph_def.library.function)


def rejects(function, match, **inputs):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        function(**inputs)


def test_size_and_shape_guards(exported):
    _, loaded = exported
    images = loaded.signatures["serving_default"]
    side = "sides of 4 to 64 pixels"
    rejects(images, side, images=np.zeros((1, MAX + 1, 8, 3), np.uint8))
    rejects(images, side, images=np.zeros((1, 8, 3, 3), np.uint8))
    rejects(images, side, images=np.zeros((1, 0, 8, 3), np.uint8))
    rejects(images, "batch is empty", images=np.zeros((0, 8, 8, 3), np.uint8))
    assert images(images=np.zeros((1, 4, MAX, 3), np.uint8))["stylized_images"].shape == (1, 4, MAX, 3)


def forged_headers():
    """Tiny files whose headers claim 100000 x 90000 pixels."""
    png = encode(np.zeros((4, 4, 3), np.uint8))
    gif = encode(np.zeros((4, 4, 3), np.uint8), "GIF")
    bmp = encode(np.zeros((4, 4, 3), np.uint8), "BMP")
    return {"png": png[:16] + struct.pack(">II", 90000, 100000) + png[24:],
            "gif": gif[:6] + struct.pack("<HH", 60000, 65000) + gif[10:],
            "bmp": bmp[:18] + struct.pack("<ii", 90000, -100000) + bmp[26:]}


def test_encoded_image_guards(exported):
    _, loaded = exported
    files = loaded.signatures["stylize_bytes"]
    for data in forged_headers().values():  # Refused from the header: a decode would need 27 GB.
        rejects(files, "larger than 64 pixels .* according to its header", image_bytes=tf.constant([data]))
    too_big = encode(np.zeros((MAX + 8, 8, 3), np.uint8), "JPEG")
    rejects(files, "larger than 64", image_bytes=tf.constant([too_big]))
    rejects(files, "sides of 4 to 64", image_bytes=tf.constant([encode(np.zeros((3, 8, 3), np.uint8))]))
    rejects(files, "Unknown image file format", image_bytes=tf.constant([b"not an image"]))
    rejects(files, "JPEG", image_bytes=tf.constant([b"\xff\xd8\xff\xe0 truncated"]))
    rejects(files, "batch is empty", image_bytes=tf.constant([], tf.string))
    ok = encode(np.zeros((8, 8, 3), np.uint8))
    assert files(image_bytes=tf.constant([ok, ok]))["stylized_image_bytes"].shape == (2,)


def test_warmup_file_holds_one_predict_request_per_signature(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    result, loaded = exported
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(str(result.path / export.WARMUP_FILE))]
    requests = [log.predict_log.request for log in logs]
    assert [r.model_spec.signature_name for r in requests] == list(signatures.SIGNATURES)
    assert all(r.model_spec.name == "tiny" for r in requests)
    for request in requests:  # Every record runs: TF Serving refuses to load a version whose warm-up fails.
        signature = request.model_spec.signature_name
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        assert set(inputs) == {signatures.SIGNATURES[signature][0]}
        loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    assert tf.make_ndarray(requests[0].inputs["images"]).shape == (1, 16, 16, 3)


@pytest.mark.slow
def test_jpeg_output_format(net, tmp_path):
    result = export.export_model(net, tmp_path / "jpeg_style", max_image_size=MAX, output_format="jpeg",
                                 jpeg_quality=80, warmup_size=0)
    files = tf.saved_model.load(str(result.path)).signatures["stylize_bytes"]
    output = files(image_bytes=tf.constant([encode(pixels((16, 12, 3)))]))["stylized_image_bytes"].numpy()[0]
    assert output.startswith(b"\xff\xd8") and decode(output).shape == (16, 12, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_image_size": 3}, "max_image_size"),
    ({"output_format": "gif"}, "output_format"),
    ({"jpeg_quality": 0}, "jpeg_quality"),
    ({"version": 0}, "version"),
    ({"warmup_size": -1}, "warmup_size"),
    ({"model_name": "a/b"}, "model name"),
])
def test_bad_arguments(net, tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        export.export_model(net, tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists() or export.list_versions(tmp_path / "m") == []


def test_models_that_break_the_pixel_contract_are_refused(tmp_path):
    four_channels = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 1)])
    with pytest.raises(ConfigError, match="same shape"):
        export.export_model(four_channels, tmp_path / "m")
    with pytest.raises(WeightsError, match="not found"):
        export.export_model(tmp_path / "missing.keras", tmp_path / "m")


def load_script():
    spec = importlib.util.spec_from_file_location("export_script", ROOT / "scripts" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_export_script(net, tmp_path, capsys):
    keras_file = tmp_path / "starry.keras"
    net.save(keras_file)
    script = load_script()
    root = tmp_path / "saved_models"
    assert script.export_main([str(keras_file), "--saved-models", str(root), "--max-image-size", "32",
                               "--warmup-size", "8"]) == 0
    assert "Exported starry version 1" in capsys.readouterr().out
    assert export.list_versions(root / "starry") == [1]
    assert script.export_main([str(keras_file), "--saved-models", str(root), "--name", "other", "--version", "3",
                               "--warmup-size", "0"]) == 0
    assert export.list_versions(root / "other") == [3]
    for args, match in [([str(tmp_path / "missing.keras")], "Model file not found"),
                        ([str(keras_file), "--name", "bad name"], "model name"),
                        ([str(keras_file), "--max-image-size", "2"], "max_image_size"),
                        ([str(keras_file), "--name", "other", "--version", "3"], "already exists")]:
        assert script.export_main(args + ["--saved-models", str(root)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and match in err and err.count("\n") == 1, err


# ---------------------------------------------------------------- multi-style networks


def tiny_multi(seed=0):
    from helpers import random_transformer

    return random_transformer(seed, filters=(4, 8, 8), num_residual_blocks=1, style_names=["a", "b", "photo"])


@pytest.fixture(scope="module")
def multi_export(tmp_path_factory):
    model = tiny_multi()
    result = export.export_model(model, tmp_path_factory.mktemp("multi") / "styles", max_image_size=MAX)
    return model, tf.saved_model.load(str(result.path)), result.path


def test_multi_style_savedmodel_selects_by_name_and_blends(multi_export):
    model, loaded, _ = multi_export
    assert set(loaded.signatures) == set(signatures.MULTI_STYLE_SIGNATURES)
    images = (np.random.default_rng(0).random((2, 20, 24, 3)) * 255).astype("uint8")
    by_name = loaded.signatures["serving_default"](images=tf.constant(images), style=tf.constant(["b", "a"]))
    expected = to_uint8(np.asarray(model(images.astype("float32"), style=np.array([1, 0]))))
    assert np.abs(by_name["stylized_images"].numpy().astype(int) - expected).max() <= 1
    weights = np.array([[0.3, 0.7, 0.0]], "float32")
    blend = loaded.signatures["stylize_blend"](images=tf.constant(images), style_weights=tf.constant(weights))
    expected = to_uint8(np.asarray(model(images.astype("float32"), style=weights)))
    assert np.abs(blend["stylized_images"].numpy().astype(int) - expected).max() <= 1
    files = tf.constant([encode(images[0]), encode(images[1])])
    encoded = loaded.signatures["stylize_bytes"](image_bytes=files, style=tf.constant(["b"]))
    decoded = tf.io.decode_png(encoded["stylized_image_bytes"][0]).numpy().astype(int)
    assert np.abs(decoded - by_name["stylized_images"].numpy()[0]).max() <= 1  # Image 0 in style "b" both times.
    names = loaded.signatures["style_names"](style_index=tf.range(3))["style_names"].numpy()
    assert [n.decode() for n in names] == ["a", "b", "photo"]


@pytest.mark.parametrize("signature, inputs, message", [
    ("serving_default", {"style": ["zebra"]}, "Unknown style name; this model has: a, b, photo"),
    ("serving_default", {"style": ["a", "b", "a"]}, "one style name per image"),
    ("stylize_blend", {"style_weights": [[np.nan, 1, 0]]}, "style_weights must be finite"),
    ("style_names", {"style_index": [3]}, r"style_index must lie in \[0, 3\)"),
])
def test_multi_style_savedmodel_refuses_bad_styles(multi_export, signature, inputs, message):
    _, loaded, _ = multi_export
    arguments = {"images": tf.zeros((2, 8, 8, 3), tf.uint8)} if signature != "style_names" else {}
    for name, value in inputs.items():
        arguments[name] = tf.constant(value, tf.float32 if name == "style_weights" else None)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures[signature](**arguments)


def test_saved_model_stylizer_discovers_the_style_names(multi_export):
    from nst_tf.stylizer import SavedModelStylizer, stylize_image

    model, _, path = multi_export
    stylizer = SavedModelStylizer(path)
    assert stylizer.style_names == ["a", "b", "photo"]
    photo = (np.random.default_rng(1).random((1, 16, 16, 3)) * 255).round().astype("float32")
    weights = stylizer.style_weights("b", strength=0.5)
    got = stylize_image(stylizer, photo, style=weights)
    assert np.abs(got - to_uint8(np.asarray(model(photo, style=weights)))).max() <= 1
    requests = list(tf.data.TFRecordDataset(str(path / export.WARMUP_FILE)))
    assert len(requests) == 3  # serving_default, stylize_bytes, stylize_blend, each with a style.


# ---------------------------------------------------------------- WebP headers, unreadable sizes, version names


def webp_files(height, width):
    """The three WebP layouts Pillow writes: lossy (VP8), lossless (VP8L), extended (VP8X, with EXIF)."""
    array = pixels((height, width, 3))
    files = {}
    for kind, options in (("VP8 ", {"lossless": False}), ("VP8L", {"lossless": True}),
                          ("VP8X", {"lossless": True, "exif": b"Exif\0\0II*\0\x08\0\0\0\0\0"})):
        data = _webp(array, **options)
        assert data[12:16] == kind.encode()
        files[kind] = data
    return files


def _webp(array, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="WEBP", **options)
    return buffer.getvalue()


def test_webp_size_is_read_from_every_header_layout():
    for kind, data in webp_files(23, 37).items():
        height, width = export.encoded_image_size(tf.constant(data))
        assert (int(height), int(width)) == (23, 37), kind


def test_webp_larger_than_the_limit_is_refused_from_its_header(exported):
    _, loaded = exported
    files = loaded.signatures["stylize_bytes"]
    for kind, data in webp_files(MAX + 36, 8).items():
        rejects(files, "larger than 64 pixels .* according to its header", image_bytes=tf.constant([data]))
    # A 34-byte lossless file whose header claims 16000 x 16000 pixels.
    tiny = _webp(np.zeros((4, 4, 3), np.uint8), lossless=True)
    bits = (16000 - 1) | (16000 - 1) << 14 | (int.from_bytes(tiny[21:25], "little") & ~((1 << 28) - 1))
    forged = tiny[:21] + bits.to_bytes(4, "little") + tiny[25:]
    assert [int(v) for v in export.encoded_image_size(tf.constant(forged))] == [16000, 16000]
    rejects(files, "according to its header", image_bytes=tf.constant([forged]))
    ok = webp_files(12, 10)["VP8L"]
    assert decode(files(image_bytes=tf.constant([ok]))["stylized_image_bytes"][0].numpy()).shape == (12, 10, 3)


def test_formats_whose_size_the_header_does_not_give_are_refused_undecoded(exported):
    _, loaded = exported
    files = loaded.signatures["stylize_bytes"]
    for data in (encode(np.zeros((8, 8, 3), np.uint8), "TIFF"), b"RIFF\0\0\0\0WEBPVP8 junk", b"\x89PNG\r\n\x1a\n"):
        rejects(files, "send a JPEG, PNG, GIF, BMP or WebP file", image_bytes=tf.constant([data]))


def test_version_folders_are_ascii_digits_only(net, tmp_path, capsys):
    base = tmp_path / "saved_models" / "starry"
    for name in ("1", "\u00b2", "\u0663", "2x"):
        (base / name).mkdir(parents=True)
    assert export.list_versions(base) == [1] and export.next_version(base) == 2
    keras_file = tmp_path / "starry.keras"
    net.save(keras_file)
    assert load_script().export_main([str(keras_file), "--saved-models", str(tmp_path / "saved_models"),
                                      "--warmup-size", "0"]) == 0
    assert "Exported starry version 2" in capsys.readouterr().out


def test_a_file_named_like_the_next_version_is_left_alone(net, tmp_path, capsys):
    base = tmp_path / "saved_models" / "starry"
    base.mkdir(parents=True)
    (base / "1").write_bytes(b"a user's file that is not a version")
    keras_file = tmp_path / "starry.keras"
    net.save(keras_file)
    assert load_script().export_main([str(keras_file), "--saved-models", str(tmp_path / "saved_models"),
                                      "--warmup-size", "0"]) == 0
    assert "Exported starry version 2" in capsys.readouterr().out
    assert (base / "1").read_bytes() == b"a user's file that is not a version"
