"""benchmarks.tflite: the suite runs end to end on a tiny network (timings not checked)."""

import json
import subprocess
import sys

import pytest

from benchmarks.tflite import run_tflite_suite
from helpers import ROOT, random_transformer


@pytest.mark.slow
def test_suite_rows_sizes_and_psnr(tmp_path):
    path = tmp_path / "tiny.keras"
    random_transformer(filters=(4, 8, 32), num_residual_blocks=1, style_names=["a", "b"]).save(path)
    result = run_tflite_suite(path, sizes=(20,), warmup=0, repeats=1)
    rows = result.tables["tflite"].rows
    assert [r["form"] for r in rows] == ["SavedModel", "TFLite float32", "TFLite float16", "TFLite int8"]
    sizes = {r["form"]: r["megabytes"] for r in rows}
    assert sizes["TFLite int8"] < sizes["TFLite float16"] < sizes["TFLite float32"]
    psnr = {r["form"]: r["psnr_db"] for r in rows}
    assert psnr["TFLite float32"] > 90 and psnr["TFLite int8"] > 30 and psnr["SavedModel"] > 40
    for row in rows:  # Each form's time against the SavedModel's, from the same medians.
        assert row["vs_savedmodel"] == pytest.approx(row["median_ms"] / rows[0]["median_ms"])
    assert "| TFLite int8 |" in result.to_markdown()


@pytest.mark.slow
def test_script_runs_the_suite(tmp_path):
    path = tmp_path / "tiny.keras"
    random_transformer(filters=(4, 8, 8), num_residual_blocks=1).save(path)
    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "tflite", "--model", str(path),
                          "--sizes", "12", "--quantizations", "float16", "--warmup", "0", "--repeats", "1",
                          "--json", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())["tables"]["tflite"]
    assert [r["form"] for r in rows] == ["SavedModel", "TFLite float16"]
