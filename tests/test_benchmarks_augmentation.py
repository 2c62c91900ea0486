"""benchmarks.augmentation: the throughput and retrieval suites on tiny settings."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from helpers import random_transformer
from PIL import Image

from benchmarks import augmentation

SMALL = {"filters": (4, 8, 8), "num_residual_blocks": 1}


@pytest.fixture(scope="module")
def network():
    return random_transformer(seed=3, style_names=["a", "b", "photo"], **SMALL)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        array = rng.integers(0, 256, (48 + 4 * index, 52, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"{index}.png")
    return folder


def test_retrieval_scores_by_hand():
    original = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    stylized = np.array([[1.0, 0.1], [1.0, 0.0], [2.0, 2.1]])  # The second is nearest the first original.
    scores = augmentation.retrieval_scores(original, stylized)
    assert scores["top1"] == pytest.approx(2 / 3) and scores["top5"] == 1.0
    cosines = [1 / np.sqrt(1.01), 0.0, 4.1 / (np.sqrt(2) * np.sqrt(8.41))]
    assert scores["mean_cosine"] == pytest.approx(np.mean(cosines))
    # Fewer stylized photos than originals: ranked among all of the originals.
    partial = augmentation.retrieval_scores(original, stylized[:2])
    assert partial["top1"] == 0.5 and partial["mean_cosine"] == pytest.approx(np.mean(cosines[:2]))


@pytest.mark.slow
def test_throughput_suite_runs_on_tiny_settings(network):
    result = augmentation.run_throughput_suite(network, size=16, batch_size=2, batches=1, warmup=0, repeats=1)
    rows = result.tables["throughput"].rows
    assert len(rows) == 8 and rows[0]["ratio"] == 1.0 and rows[4]["ratio"] == 1.0
    for row in rows:  # The columns are one measurement: 2 images per repeat.
        assert row["images_per_s"] == pytest.approx(2 / row["median_s"])
        assert row["ms_per_image"] == pytest.approx(1000 * row["median_s"] / 2)
        base = rows[4] if row["path"].startswith("tf.data") else rows[0]
        assert row["ratio"] == pytest.approx(row["median_s"] / base["median_s"])
    assert "Goal: StyleAugmentation in tf.data within 1.3x" in result.to_markdown()


def test_retrieval_suite_runs_on_tiny_photos(network, photos):
    result = augmentation.run_retrieval_suite(network, photos=photos, strengths=(0.5, 1.0),
                                              squeezenet_weights=None)
    rows = result.tables["retrieval"].rows
    assert [(r["style"], r["strength"]) for r in rows] == [
        ("a", 0.5), ("a", 1.0), ("b", 0.5), ("b", 1.0), ("mean of 2 styles", 0.5), ("mean of 2 styles", 1.0),
        ("photo", 1.0)]
    for row in rows:
        assert 0 <= row["top1"] <= row["top5"] <= 1 and -1 <= row["mean_cosine"] <= 1
        assert row["label_agreement"] is None
    assert rows[4]["top1"] == pytest.approx((rows[0]["top1"] + rows[2]["top1"]) / 2)
    text = result.to_markdown()
    assert "label agreement not measured" in text and "RANDOM, the figures mean nothing" in text


def test_retrieval_suite_says_when_the_classifier_is_unavailable(network, photos, tmp_path):
    result = augmentation.run_retrieval_suite(network, photos=photos, max_photos=2, strengths=(1.0,), styles=["a"],
                                              squeezenet_weights=None, classifier="vgg19",
                                              classifier_weights=str(tmp_path / "missing.h5"))
    assert "VGG19 top-1 label agreement NOT MEASURED" in result.to_markdown()
    assert result.settings["photos"] == 2 and result.settings["gallery"] == 4
    assert all(row["label_agreement"] is None for row in result.tables["retrieval"].rows)


def test_label_agreement_with_a_given_classifier(network, photos, monkeypatch):
    # A stand-in classifier (brightness above mid-grey), to test the bookkeeping without VGG19 weights.
    monkeypatch.setattr(augmentation, "vgg19_classifier",
                        lambda weights: (lambda image: int(np.mean(image) > 127.5)))
    result = augmentation.run_retrieval_suite(network, photos=photos, strengths=(1.0,), styles=["a"],
                                              squeezenet_weights=None, classifier="vgg19")
    rows = result.tables["retrieval"].rows
    assert all(0 <= row["label_agreement"] <= 1 for row in rows)


def test_retrieval_suite_rejects_unknown_styles_and_missing_photos(network, photos, tmp_path):
    from nst_tf.errors import ConfigError, ImageError

    with pytest.raises(ConfigError, match="Unknown style name 'c'"):
        augmentation.run_retrieval_suite(network, photos=photos, styles=["c"], squeezenet_weights=None)
    with pytest.raises(ImageError, match=r"at least \d+ px.*Received: a side of 1\d px"):
        augmentation.run_retrieval_suite(network, photos=photos, image_size=16, squeezenet_weights=None)
    with pytest.raises(FileNotFoundError, match="No photos"):
        augmentation.run_retrieval_suite(network, photos=tmp_path / "empty", squeezenet_weights=None)


@pytest.mark.slow
def test_script_runs_the_augment_suites(network, photos, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "benchmark_script", pathlib.Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model = tmp_path / "styles.keras"
    network.save(model)
    output = tmp_path / "out.json"
    assert script.main(["augment-retrieval", "--model", str(model), "--photos", str(photos), "--strengths", "1",
                        "--squeezenet-weights", "none", "--json", str(output)]) == 0
    data = json.loads(output.read_text())
    assert data["suite"] == "augment-retrieval" and len(data["tables"]["retrieval"]) == 4
    assert script.main(["augment-throughput", "--model", str(model), "--size", "16", "--batch-size", "2",
                        "--batches", "1", "--warmup", "0", "--repeats", "1", "--json", str(output)]) == 0
    assert json.loads(output.read_text())["suite"] == "augment-throughput"
