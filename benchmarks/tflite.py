"""Benchmark suite ``tflite``: the TFLite model beside the SavedModel, size and CPU latency.

For one TransformerNet (a shipped ``.keras`` file, or random weights), each row is one
deployment form at one image size:

* ``SavedModel``: :func:`nst_tf.export.export_model`'s version folder (size: every
  file in it), timed through ``serving_default`` of ``tf.saved_model.load`` with uint8
  pixels, as TF Serving runs it;
* ``TFLite float32 / float16 / int8``: :func:`nst_tf.tflite.export_tflite`'s file,
  timed through ``tf.lite.Interpreter`` (its default CPU delegate, XNNPACK) on float32
  pixels, already resized to the size, so only ``invoke`` is timed.

All rows of a size are timed round-robin (:func:`benchmarks.core.time_side_by_side`),
so background load hits them alike; the load other processes put on the machine is
recorded beside each size and a row is marked disturbed above 0.25 cores.  PSNR is
that of each output against the Keras model's, on a smooth generated photo.
"""

import os
import pathlib
import tempfile

import numpy as np
import tensorflow as tf

from benchmarks.core import LoadMonitor, SuiteResult, Table, machine_info, stopwatch, time_side_by_side

DISTURBED_CORES = 0.25
"""Background load, cores, above which a size's rows are marked disturbed."""

_COLUMNS = [("size", "size px", "{}"), ("form", "form", "{}"), ("megabytes", "file MB", "{:.2f}"),
            ("median_ms", "median ms", "{:.1f}"), ("best_ms", "best ms", "{:.1f}"),
            ("vs_savedmodel", "x SavedModel time", "{:.2f}"), ("psnr_db", "PSNR vs Keras dB", "{:.1f}"),
            ("background_cores", "bg cores", "{:.2f}"), ("disturbed", "disturbed", "{}")]


def _folder_bytes(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file())


def _psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def run_tflite_suite(model_path="auto", sizes=(256, 512), quantizations=None, warmup=2, repeats=5, num_threads=None):
    """Size and CPU latency of the SavedModel and of each TFLite quantization.

    Args:
        model_path: a ``.keras`` path, ``"auto"`` (the first shipped network found, else
            random weights) or None (random weights); see
            :func:`benchmarks.fast.load_inference_models`.
        sizes: image sides, pixels.
        quantizations: sequence of :data:`nst_tf.tflite.QUANTIZATIONS` names; None: all.
        warmup, repeats: untimed and timed calls per form and size.
        num_threads: int or None. TFLite interpreter threads; None: the runtime's default.

    Returns:
        SuiteResult ``tflite`` with one table ``tflite``.
    """
    from benchmarks.fast import _photo_like, load_inference_models
    from nst_tf import export, tflite

    quantizations = tuple(quantizations or tflite.QUANTIZATIONS)
    for quantization in quantizations:
        tflite.check_quantization(quantization)
    models, label = load_inference_models(model_path)
    model = models["float32"]
    style = None
    if model.num_styles:
        style = np.zeros([1, model.num_styles], np.float32)
        style[0, 0] = 1.0
    rows = []
    with tempfile.TemporaryDirectory() as folder, LoadMonitor(0.5) as load:
        saved = export.export_model(model, pathlib.Path(folder) / "net", warmup_size=0)
        loaded = tf.saved_model.load(str(saved.path))
        if style is None:
            signature, extra = loaded.signatures[export.SIGNATURE_IMAGES], {}
        else:
            signature = loaded.signatures[export.SIGNATURE_BLEND]
            extra = {export.INPUT_STYLE_WEIGHTS: tf.constant(style)}
        forms = {"SavedModel": _folder_bytes(saved.path)}
        interpreters = {}
        for quantization in quantizations:
            result = tflite.export_tflite(model, pathlib.Path(folder) / f"net_{quantization}.tflite", quantization)
            forms[f"TFLite {quantization}"] = result.size_bytes
            interpreters[f"TFLite {quantization}"] = tflite.load_interpreter(result.path, num_threads=num_threads)
        for size in sizes:
            photo = _photo_like((1, size, size, 3), seed=size)
            pixels = np.round(photo).astype(np.float32)
            reference = np.asarray(model(pixels, style=style) if style is not None else model(pixels))
            outputs = {"SavedModel": signature(images=tf.constant(pixels.astype(np.uint8)), **extra)[
                export.OUTPUT_IMAGES].numpy()}
            timers = {"SavedModel": stopwatch(lambda: signature(images=tf.constant(pixels.astype(np.uint8)),
                                                                **extra)[export.OUTPUT_IMAGES].numpy())}
            for name, interpreter in interpreters.items():
                outputs[name] = tflite.stylize(interpreter, pixels, style)  # Resizes and allocates once.
                timers[name] = stopwatch(interpreter.invoke)
            load.mark()
            timings = time_side_by_side(timers, warmup=warmup, repeats=repeats)
            background, _ = load.mark()
            base = timings["SavedModel"].median
            for name, timing in timings.items():
                rows.append({"size": size, "form": name, "megabytes": forms[name] / 1e6,
                             "median_ms": timing.median * 1e3, "best_ms": timing.best * 1e3,
                             "vs_savedmodel": timing.median / base, "psnr_db": _psnr(outputs[name], reference),
                             "background_cores": background, "disturbed": "disturbed" if (
                                 background > DISTURBED_CORES) else ""})
    notes = [f"Network: {label}. SavedModel: serving_default (uint8 in and out, the compiled inference graph, "
             "TensorFlow's CPU kernels); TFLite: tf.lite.Interpreter invoke() with its default delegate.",
             "The SavedModel's PSNR includes rounding to uint8; the TFLite rows return float32.",
             f"Rows whose bg cores exceed {DISTURBED_CORES} were measured while other processes used the CPU: "
             "treat their times as disturbed."]
    settings = {"model": label, "sizes": list(sizes), "quantizations": list(quantizations), "warmup": warmup,
                "repeats": repeats, "num_threads": num_threads or "default", "cpus": os.cpu_count()}
    return SuiteResult("tflite", machine_info(), settings, {"tflite": Table(
        "SavedModel vs TFLite: file size, CPU latency per image, PSNR against the Keras model", _COLUMNS, rows)},
        notes)
