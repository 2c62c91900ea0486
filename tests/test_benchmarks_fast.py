"""benchmarks.fast: FLOP counts by hand, the variants' forward passes, tiny end-to-end suites."""

import importlib.util
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from benchmarks import core
from benchmarks import fast as benchmark_fast
from helpers import random_transformer
from nst_tf import optimize
from nst_tf.features import FeatureExtractor
from nst_tf.transformer import TransformerNet, with_dtype_policy

SMALL = {"filters": (4, 8, 8), "num_residual_blocks": 1}
TINY_PEAK = ((8, 8, 8, 8),)


@pytest.fixture(scope="module")
def small_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "small.keras"
    random_transformer(**SMALL).save(path)
    return path


def _photo(path, size, seed):
    array = benchmark_fast._photo_like((1, size[1], size[0], 3), seed=seed)[0]
    Image.fromarray(array.astype("uint8")).save(path)
    return path


# ---------------------------------------------------------------- FLOPs


def _hand_count(batch, height, width, filters=(32, 64, 128), blocks=5):
    """Johnson's network by hand: sizes padded to a multiple of 4; (k, c_in, c_out, divisor) per conv."""
    height, width = -(-height // 4) * 4, -(-width // 4) * 4
    f1, f2, f3 = filters
    convs = [(9, 3, f1, 1), (3, f1, f2, 2), (3, f2, f3, 4)] + [(3, f3, f3, 4)] * (2 * blocks) + \
        [(3, f3, f2, 2), (3, f2, f1, 1), (9, f1, 3, 1)]
    return [2 * k * k * c_in * c_out * batch * (height // d) * (width // d) for k, c_in, c_out, d in convs]


@pytest.mark.parametrize("shape", [(1, 64, 64, 3), (2, 30, 42, 3)])
def test_transformer_conv_flops_match_a_hand_count(shape):
    counts = benchmark_fast.transformer_conv_flops(random_transformer(random_biases=False), shape)
    assert [c.flops for c in counts] == _hand_count(*shape[:3])
    # 512 px: 80.6 GFLOP, of which the ten residual convs are 60%.
    assert sum(_hand_count(1, 512, 512)) == 80_631_300_096
    assert [benchmark_fast._conv_group(c.layer) for c in counts] == \
        ["conv1", "conv2", "conv3"] + ["res"] * 10 + ["up1", "up2", "head"]


def test_graph_conv_flops_agrees_with_conv_flops_on_a_functional_model():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="a")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, name="b")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="depthwise")(x)
    model = keras.Model(inputs, x)
    by_layers = core.conv_flops(model, (2, 9, 9, 3))
    by_graph = benchmark_fast.graph_conv_flops(model, (2, 9, 9, 3))
    assert [(c.kernel_shape, c.output_shape, c.flops) for c in by_graph] == \
        [(c.kernel_shape, c.output_shape, c.flops) for c in by_layers]
    assert len(by_graph) == 3
    # Keras runs grouped convolutions on the CPU as a nested XLA function: refused, not silently missed.
    grouped = keras.Sequential([keras.Input((None, None, 4)), keras.layers.Conv2D(4, 1, groups=2)])
    with pytest.raises(ValueError, match="PartitionedCall"):
        benchmark_fast.graph_conv_flops(grouped, (1, 8, 8, 4))


def test_graph_conv_flops_refuses_nested_functions():
    kernel = tf.ones((3, 3, 3, 2))
    inner = tf.function(lambda x: tf.nn.conv2d(x, kernel, 1, "SAME"))
    with pytest.raises(ValueError, match="PartitionedCall"):
        benchmark_fast.graph_conv_flops(lambda x: inner(x), (1, 8, 8, 3))


def test_training_step_flops_follow_the_convention():
    transformer = random_transformer(random_biases=False, **SMALL)
    extractor = FeatureExtractor(["block1_conv2", "block2_conv2"], "vgg16", None)
    counts = benchmark_fast.training_step_flops(transformer, extractor, 2, 16, ["block1_conv2", "block2_conv2"])
    forward_t = _hand_count(2, 16, 16, SMALL["filters"], 1)
    vgg = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2)]  # (c_in, c_out, divisor) to block2_conv2.
    forward_l = sum(2 * 9 * c_in * c_out * (16 // d) ** 2 for c_in, c_out, d in vgg)
    assert counts["transformer_conv_flops"] == 3 * sum(forward_t) - forward_t[0]
    assert counts["loss_network_conv_flops"] == 4 * 2 * forward_l
    assert counts["step_gram_flops"] == 2 * (2 * 2 * 16 * 16 * 64 ** 2 + 2 * 2 * 8 * 8 * 128 ** 2)


# ---------------------------------------------------------------- variants


@pytest.mark.slow
def test_every_variant_computes_what_the_model_computes():
    model = random_transformer(**SMALL)
    image = tf.constant(benchmark_fast._photo_like((1, 30, 42, 3)))
    expected = model(image).numpy()
    for name, variant in benchmark_fast.VARIANTS.items():
        out = benchmark_fast.variant_function(model, variant)(image).numpy()
        np.testing.assert_allclose(out, expected, atol=0.05, err_msg=name)
    bf16 = with_dtype_policy(model, "mixed_bfloat16")
    out = benchmark_fast.variant_function(bf16, benchmark_fast.VARIANTS["library"])(image).numpy()
    assert 0 < np.abs(out - expected).mean() < 3.0  # bfloat16: close, not equal.


# ---------------------------------------------------------------- suites, tiny


@pytest.mark.slow
def test_inference_suite_runs_end_to_end(small_model_path):
    result = benchmark_fast.run_inference_suite(
        small_model_path, sizes=(16, 24), warmup=1, repeats=1, breakdown_size=16,
        variants=("library", "library-no-phase"), peak_shapes=TINY_PEAK)
    rows = result.tables["inference"].rows
    assert [(r["size"], r["precision"], r["path"]) for r in rows] == [
        (size, precision, path) for size in (16, 24)
        for path in ("stylize_image (library)", "Keras call, tf.function", "Keras call, eager")
        for precision in ("float32", "bfloat16")]
    for row in rows:
        flops = sum(_hand_count(1, row["size"], row["size"], SMALL["filters"], 1))
        assert row["conv_gflop"] == pytest.approx(flops / 1e9)
        assert row["gflops"] == pytest.approx(flops / row["median_s"] / 1e9)  # Architecture FLOPs on every row.
        executed = _executed_count(row["size"], SMALL["filters"]) if "library" in row["path"] else flops
        assert row["executed_gflop"] == pytest.approx(executed / 1e9)
        assert row["executed_gflops"] == pytest.approx(executed / row["median_s"] / 1e9)
        assert row["percent_of_peak"] == pytest.approx(100 * row["gflops"] / row["peak_gflops"])
        if row["precision"] == "float32":
            assert row["speedup"] == 1.0
    groups = {r["group"]: r for r in result.tables["groups"].rows}
    assert set(groups) == {"conv1", "conv2", "conv3", "res", "up1", "up2", "head", "all convs",
                           "whole network (tf.function)"}
    assert groups["res"]["count"] == 2 and groups["all convs"]["count"] == 8
    assert sum(groups[g]["float32_s"] for g in ("conv1", "conv2", "conv3", "res", "up1", "up2", "head")) == \
        pytest.approx(groups["all convs"]["float32_s"])
    variants = {r["variant"]: r for r in result.tables["variants"].rows}
    assert list(variants) == ["model", "library", "library-no-phase"]
    assert variants["model"]["float32_vs_model"] == 1.0
    for name in ("library", "library-no-phase"):
        assert variants[name]["mean_abs_diff"][0] < 0.01, name
    assert float(variants["library"]["executed_gflop"]) == pytest.approx(_executed_count(16, SMALL["filters"]) / 1e9,
                                                                         abs=0.05)
    assert float(variants["model"]["executed_gflop"]) == pytest.approx(sum(_hand_count(1, 16, 16, SMALL["filters"], 1))
                                                                       / 1e9, abs=0.05)
    text = result.to_markdown()
    assert "| 24 | bfloat16 | Keras call, tf.function |" in text and "random weights" not in text
    assert any(note.startswith("GOAL CHECK") for note in result.notes) is False  # No 512 px row here.


def _executed_count(size, filters=(32, 64, 128), blocks=1):
    """FLOPs the library graph runs (hand count): upsampling convs as 2x2 phase convs, the blocked head."""
    padded = -(-size // 4) * 4
    f1, f2, f3 = filters
    convs = _hand_count(1, size, size, filters, blocks)[:-3]
    low = padded // 4
    convs.append(2 * 4 * f3 * 4 * f2 * (low + 1) ** 2)  # up1: [2, 2, f3, 4 f2] on the edge-padded low-res map.
    convs.append(2 * 4 * f2 * 4 * f1 * (2 * low + 1) ** 2)  # up2
    convs.append(2 * 12 * 12 * f1 * 48 * (padded // 4) ** 2)  # head: stride 4, 12x12, 48 channels.
    return sum(convs)


@pytest.mark.slow
def test_executed_flops_of_the_library_graph():
    model = random_transformer(random_biases=False)
    counts = benchmark_fast.executed_conv_flops(model, (1, 512, 512, 3))
    assert sum(c.flops for c in counts) == _executed_count(512, blocks=5)
    assert [c.kernel_shape for c in counts[-3:]] == [(2, 2, 128, 256), (2, 2, 64, 128), (12, 12, 32, 48)]
    # The phase convs do 2.25x fewer FLOPs than the upsampling 3x3 convs they replace (up to the 1-pixel border).
    architecture = benchmark_fast.transformer_conv_flops(model, (1, 512, 512, 3))
    assert sum(c.flops for c in architecture[-3:-1]) / sum(c.flops for c in counts[-3:-1]) == \
        pytest.approx(2.25, rel=0.02)


def test_graph_conv_flops_refuses_loops():
    with pytest.raises(ValueError, match="While"):
        benchmark_fast.graph_conv_flops(
            lambda x: tf.map_fn(lambda image: tf.nn.conv2d(image[None], tf.ones([3, 3, 3, 4]), 1, "SAME")[0], x,
                                fn_output_signature=tf.TensorSpec([None, None, 4])), (2, 8, 8, 3))


def test_inference_suite_rejects_unknown_variants():
    with pytest.raises(ValueError, match="Unknown variant 'nope'"):
        benchmark_fast.run_inference_suite(None, variants=("nope",))


@pytest.mark.slow
def test_memory_suite_runs_fresh_processes(small_model_path):
    result = benchmark_fast.run_memory_suite(small_model_path, image_size=64, tiles=(32,), overlap=4,
                                             untiled_sizes=(32,))
    tiled, untiled = result.tables["memory"].rows
    # 64 px in tiles of 32 at stride (32 - 4) // 4 * 4 = 28: starts 0, 28, 32 on each axis.
    assert tiled["tiles"] == 9 and untiled["tiles"] == 1
    assert tiled["ok"] and untiled["ok"]
    assert tiled["peak_gib"] >= tiled["before_gib"] > 0.1  # TensorFlow alone takes more than 100 MiB.
    assert tiled["goal"] == "met" and untiled["goal"] is None


@pytest.mark.slow
def test_training_suite_runs_both_precisions():
    result = benchmark_fast.run_training_suite(("squeezenet1_1",), size=32, batch_size=2, warmup=1, repeats=2,
                                               squeezenet_weights=None, peak_shapes=TINY_PEAK,
                                               transformer_config=SMALL)
    rows = result.tables["training"].rows
    assert [(r["loss_network"], r["precision"], r["weights"]) for r in rows] == [
        ("squeezenet1_1", "float32", "random"), ("squeezenet1_1", "bfloat16", "random")]
    for row in rows:
        assert row["images_per_second"] == pytest.approx(2 / row["step_s"])
        assert len(row["all_s"]) == 2 and row["step_s"] == pytest.approx(sum(row["all_s"]) / 2)


METADATA = {"training": {"config": {"style_size": 48, "image_size": 256}, "loss_network": "squeezenet1_1",
                         "content_weight": 1.0, "tv_weight": 0.5},
            "styles": {"starry": {"image": "../shared/assets/images/style/starry.png", "style_weight": 2e-2}}}


@pytest.fixture
def quality_assets(tmp_path, small_model_path):
    from nst_tf.stylizer import load_transformer

    models = tmp_path / "models"
    models.mkdir()
    model = load_transformer(small_model_path)
    model.metadata = METADATA
    model.save(models / "starry.keras")
    (tmp_path / "content").mkdir()
    _photo(tmp_path / "content" / "a.png", (48, 36), 1)
    _photo(tmp_path / "content" / "b.jpg", (40, 48), 2)
    (tmp_path / "style").mkdir()
    _photo(tmp_path / "style" / "starry.png", (64, 56), 3)
    return tmp_path


def test_training_settings_come_from_the_saved_metadata(quality_assets, small_model_path):
    from nst_tf.stylizer import load_transformer

    settings = benchmark_fast.training_settings(load_transformer(quality_assets / "models" / "starry.keras"))
    assert settings == {"style": "starry.png", "style_size": 48, "image_size": 256, "loss_network": "squeezenet1_1",
                        "content_weight": 1.0, "style_weight": 2e-2, "tv_weight": 0.5, "source": "metadata"}
    assert benchmark_fast.training_settings(load_transformer(small_model_path))["source"] == "defaults"


def test_quality_targets_are_the_styles_of_a_multi_style_network(tmp_path, small_model_path):
    from helpers import random_transformer

    multi = random_transformer(0, filters=(4, 8, 8), num_residual_blocks=1, style_names=["a", "b", "photo"])
    multi.save(tmp_path / "multi.keras")
    targets = benchmark_fast.quality_targets([tmp_path / "multi.keras", small_model_path])
    assert targets == [(tmp_path / "multi.keras", "a"), (tmp_path / "multi.keras", "b"), (small_model_path, None)]
    assert benchmark_fast.quality_targets([tmp_path / "multi.keras"], styles=["b"]) == [(tmp_path / "multi.keras", "b")]


def test_quality_objective_is_the_training_objective(quality_assets):
    problem = benchmark_fast.build_quality_problem(quality_assets / "models" / "starry.keras",
                                                   quality_assets / "style", size=48, squeezenet_weights=None)
    assert max(problem.style.shape[1:3]) == 48  # The style size of the saved training configuration.
    assert problem.evaluator.loss_weights == (1.0, 2e-2, 0.5)
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 255, (1, 36, 48, 3)).astype("float32")
    image = rng.uniform(0, 255, (1, 36, 48, 3)).astype("float32")
    objective, _ = optimize.build_objective(content, [problem.style], problem.config, problem.extractor)
    ours = {k: float(v) for k, v in objective(tf.constant(image)).items()}
    trainers = {k: float(v) for k, v in problem.evaluator.perceptual_losses(content, image).items()}
    for key in ("content", "style", "tv", "total"):
        assert ours[key] == pytest.approx(trainers[key], rel=1e-4), key


def test_quality_objective_of_another_network_judges_a_network_without_one(quality_assets, small_model_path):
    # A network without loss settings (a pixel-trained one, a checkpoint) judged by another's objective.
    problem = benchmark_fast.build_quality_problem(small_model_path, quality_assets / "style", size=48,
                                                   squeezenet_weights=None,
                                                   objective_model=quality_assets / "models" / "starry.keras")
    assert problem.settings["source"] == "metadata" and problem.settings["style"] == "starry.png"
    assert problem.evaluator.loss_weights == (1.0, 2e-2, 0.5)
    assert problem.model.metadata != METADATA  # The network judged is still the one given.


def test_droplet_score_sees_a_planted_blob_and_only_in_a_transformer_net():
    keras.utils.set_random_seed(0)
    model = TransformerNet(filters=(8, 16, 16), num_residual_blocks=1)
    flat = np.full([1, 64, 64, 3], 120.0, np.float32) + np.random.default_rng(0).normal(0, 1, (1, 64, 64, 3))
    spotted = flat.copy()
    spotted[:, 10:18, 12:20] = 255.0  # A bright square on a flat ground stands out in the decoder.
    assert benchmark_fast.droplet_score(model, flat.astype("float32")) == 0.0
    assert benchmark_fast.droplet_score(model, spotted.astype("float32")) > 0.0
    assert benchmark_fast.droplet_score(keras.Sequential([keras.layers.Identity()]), flat) is None


@pytest.mark.slow
def test_quality_suite_runs_end_to_end(quality_assets):
    result = benchmark_fast.run_quality_suite(
        [quality_assets / "models" / "starry.keras", quality_assets / "models" / "missing.keras"],
        content_dir=quality_assets / "content", style_dir=quality_assets / "style", size=48, iterations=(2, 4, 6),
        learning_rate=1.0,
        squeezenet_weights=None)
    rows = result.tables["quality"].rows
    assert [r["photo"] for r in rows] == ["a", "b", "**mean**"]
    assert rows[0]["shape"] == "48x36" and rows[1]["shape"] == "40x48"
    for row in rows[:2]:
        assert row["opt_6"] < row["opt_2"] < row["content_photo"]  # Adam lowers the shared objective.
        assert row["ratio_4"] == pytest.approx(row["network"] / row["opt_4"])
        assert row["match"] in (1, 2, 3, 4, 5, 6, "> 6")
    assert rows[2]["network"] == pytest.approx((rows[0]["network"] + rows[1]["network"]) / 2)
    assert all(row["droplet"] >= 0 for row in rows)
    assert rows[2]["droplet"] == pytest.approx((rows[0]["droplet"] + rows[1]["droplet"]) / 2)
    assert "starry.png at 48 px" in result.to_markdown() and "droplet loss" in result.to_markdown()


@pytest.mark.slow
def test_script_runs_the_fast_inference_suite_without_the_peak(small_model_path, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "benchmark_script", pathlib.Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output = tmp_path / "out.json"
    assert script.main(["fast-inference", "--model", str(small_model_path), "--sizes", "16", "--breakdown-size", "0",
                        "--variants", "--warmup", "0", "--repeats", "1", "--no-peak", "--json", str(output)]) == 0
    data = json.loads(output.read_text())
    assert data["suite"] == "fast-inference" and list(data["tables"]) == ["inference"]
    assert [row["percent_of_peak"] for row in data["tables"]["inference"]] == [None] * 6
