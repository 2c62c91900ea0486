"""Tests of nst_tf.training and the train command: loss, fit, resume, strategies, bad input.

The loss network is SqueezeNet with seeded random weights (``weights=None``) and
images are 32-48 px, so every test runs in seconds on a CPU.
"""

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ROOT, write_image
from nst_tf import losses
from nst_tf.cli import train_main
from nst_tf.errors import ConfigError, ImageError
from nst_tf.features import FeatureExtractor
from nst_tf.training import DEFAULT_LAYERS, FastStyleTrainer, TrainConfig, train
from nst_tf.stylizer import load_transformer
from nst_tf.transformer import ENCODER_BLOCKS, TransformerNet

SMALL = {"filters": (8, 16, 16), "num_residual_blocks": 1}
NETWORK = "squeezenet1_1"


def _style(size=48, seed=3):
    rng = np.random.default_rng(seed)
    stripes = np.sin(np.arange(size) / 2.0)[None, :, None] * 100 + 128
    return (stripes + rng.normal(0, 20, (size, size, 3))).clip(0, 255)[None].astype("float32")


def _photos(count=4, size=32, seed=0):
    y, x = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    return np.stack([np.stack([np.cos(a * x + b * y), x * a / 4, y], -1) * 100 + 120 + rng.normal(0, 5, (size, size, 3))
                     for a, b in rng.uniform(1, 4, (count, 2))]).clip(0, 255).astype("float32")


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(sum(DEFAULT_LAYERS[NETWORK], ()), backbone=NETWORK, weights=None)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(4):
        write_image(root / f"p{i}.png", (44, 36), seed=i, pattern="photo" if i % 2 else "noise")
    (root / "broken.jpg").write_bytes(b"junk")
    return root


@pytest.fixture
def style_file(tmp_path):
    path = tmp_path / "style.png"
    keras.utils.save_img(path, _style()[0], scale=False)
    return path


def _config(folder, style_file, tmp_path, **overrides):
    values = dict(style=str(style_file), data=str(folder), output=str(tmp_path / "out" / "net.keras"),
                  steps=2, save_every=1, batch_size=2, image_size=32, loss_network=NETWORK,
                  loss_weights_file=None, style_size=48)
    values.update(overrides)
    return TrainConfig(**values)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("overrides, flag", [
    ({"steps": 10, "epochs": 1.0}, "not both"), ({"steps": 0}, "--steps"), ({"epochs": -1.0}, "--epochs"),
    ({"batch_size": 0}, "--batch-size"), ({"image_size": 8}, "--image-size"),
    ({"learning_rate": 0.0}, "--learning-rate"),
    ({"style_weight": -1.0}, "--style-weight"), ({"tv_weight": float("nan")}, "--tv-weight"),
    ({"saturation_weight": -1.0}, "--saturation-weight"), ({"droplet_weight": float("inf")}, "--droplet-weight"),
    ({"strategy": "tpu"}, "--strategy"), ({"output": "net.h5"}, "--output"), ({"loss_network": "resnet"}, "backbone"),
    ({"style_size": 4}, "--style-size"), ({"save_every": 0}, "--save-every"),
    ({"objective": "gram"}, "--objective must be one of"), ({"objective": "pixel"}, "go together"),
    ({"targets": "t"}, "go together"),
    ({"objective": "pixel", "targets": "t", "style": ("a.jpg", "b.jpg")}, "single-style network"),
    ({"objective": "pixel", "targets": "t", "photo_style": True}, "single-style network"),
])
def test_config_rejects_bad_values(overrides, flag):
    with pytest.raises(ConfigError, match=flag) as info:
        TrainConfig(**{"style": "s.jpg", "data": "d", "output": "o.keras", **overrides})
    assert "Received:" in str(info.value) and "\n" not in str(info.value)


def test_total_steps_are_exact_whatever_save_every():
    assert TrainConfig("s", "d", "o.keras", steps=20).total_steps(1000) == 20
    assert TrainConfig("s", "d", "o.keras", steps=150).total_steps(1000) == 150  # save_every is 100.
    assert TrainConfig("s", "d", "o.keras", epochs=1.0, save_every=2).total_steps(10) == 3  # ceil(10 / 4)
    assert TrainConfig("s", "d", "o.keras", save_every=1).total_steps(10) == 5  # 2 epochs by default


# ---------------------------------------------------------------- FastStyleTrainer


def _trainer(extractor, transformer=None, **kwargs):
    keras.utils.set_random_seed(0)
    transformer = transformer or TransformerNet(**SMALL)
    return FastStyleTrainer(transformer, _style(), feature_extractor=extractor, **kwargs)


@pytest.mark.slow
def test_fit_lowers_the_loss_and_tracks_each_term(extractor):
    trainer = _trainer(extractor, style_weight=1e-2, tv_weight=1e-2)
    photos = _photos()
    before = float(trainer.perceptual_losses(photos, trainer(photos))["total"])
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = trainer.fit(photos, batch_size=4, epochs=12, verbose=0).history
    after = float(trainer.perceptual_losses(photos, trainer(photos))["total"])
    assert after < 0.8 * before
    assert {"loss", "content_loss", "style_loss", "tv_loss"} <= set(history)
    parts = sum(history[name][-1] for name in ("content_loss", "style_loss", "tv_loss"))
    np.testing.assert_allclose(parts, history["loss"][-1], rtol=1e-4)
    assert [w.path for w in trainer.trainable_weights] == [w.path for w in trainer.transformer.trainable_weights]


@pytest.mark.slow
def test_saturation_loss_brings_saturated_pixels_back_where_the_other_losses_reach_them(extractor):
    photos = _photos()

    def saturated_network():
        keras.utils.set_random_seed(0)
        transformer = TransformerNet(**SMALL)
        transformer(photos)
        transformer.head.conv.bias.assign([6.0, -6.0, 0.0])  # Red saturated high, green low: tanh' ~ 2e-5.
        transformer.head.conv.kernel.assign(transformer.head.conv.kernel * 0.1)
        return transformer

    def saturated(model):
        return float(tf.reduce_mean(tf.cast(tf.abs(model(photos, return_logits=True)[1]) > 2.5, tf.float32)))

    def fit(saturation_weight):
        transformer = saturated_network()
        trainer = FastStyleTrainer(transformer, _style(), feature_extractor=extractor, style_weight=1e-2,
                                   saturation_weight=saturation_weight)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
        return transformer, trainer, trainer.fit(photos, batch_size=4, epochs=8, verbose=0).history

    before = saturated(saturated_network())
    control, _, _ = fit(0.0)
    transformer, trainer, history = fit(100.0)
    assert before > 0.6 and saturated(control) > 0.9 * before  # The image losses alone cannot move them.
    assert saturated(transformer) < 0.5 * before
    assert history["saturation_loss"][-1] < 0.5 * history["saturation_loss"][0]
    parts = sum(history[name][-1] for name in ("content_loss", "style_loss", "tv_loss", "saturation_loss"))
    np.testing.assert_allclose(parts, history["loss"][-1], rtol=1e-4)
    assert float(trainer.perceptual_losses(photos, trainer(photos))["saturation"]) == 0.0  # Needs the logits.


def test_loss_weights_default_per_network_and_scale_terms(extractor):
    photos = _photos(2)
    base = _trainer(extractor)
    doubled = _trainer(extractor, content_weight=2 * base.loss_weights[0], style_weight=0.0)
    a = base.perceptual_losses(photos, base(photos))
    b = doubled.perceptual_losses(photos, doubled(photos))
    np.testing.assert_allclose(float(b["content"]), 2 * float(a["content"]), rtol=1e-5)
    assert float(b["style"]) == 0.0


def test_style_image_too_small(extractor):
    with pytest.raises(ImageError, match="too small"):
        FastStyleTrainer(TransformerNet(**SMALL), _style(16), feature_extractor=extractor)


@pytest.mark.slow
def test_downstream_fine_tuning_with_plain_keras(extractor, tmp_path):
    # A user's own code: load a trained network, fine-tune it on a new style, save it.
    keras.utils.set_random_seed(0)
    TransformerNet(**SMALL).save(tmp_path / "old_style.keras")
    network = keras.models.load_model(tmp_path / "old_style.keras")
    trainer = FastStyleTrainer(network, _style(seed=9), feature_extractor=extractor, style_weight=1e-2)
    photos = _photos(4, seed=5)
    before = float(trainer.perceptual_losses(photos, trainer(photos))["total"])
    trainer.compile(optimizer="adam")
    trainer.fit(tf.data.Dataset.from_tensor_slices(photos).batch(2).repeat(), steps_per_epoch=10, epochs=1,
                verbose=0)
    assert float(trainer.perceptual_losses(photos, trainer(photos))["total"]) < before
    network.save(tmp_path / "new_style.keras")
    np.testing.assert_allclose(load_transformer(tmp_path / "new_style.keras")(photos), network(photos), atol=1e-4)


@pytest.mark.slow
def test_droplet_loss_is_weighted_on_the_blocks_after_the_encoder_and_keeps_blobs_down(extractor):
    rng = np.random.default_rng(0)
    photos = (120 + rng.normal(0, 1, (4, 64, 64, 3))).astype("float32")
    photos[:, 10:18, 12:20] = 255.0  # A bright square on a flat ground: a blob in the decoder.
    keras.utils.set_random_seed(0)
    transformer = TransformerNet(**SMALL)
    trainer = FastStyleTrainer(transformer, _style(), feature_extractor=extractor, style_weight=1e-2,
                               droplet_weight=100.0)
    images, logits, activations = trainer(photos, training=True)
    assert len(activations) == len(transformer.blocks) - ENCODER_BLOCKS  # Residual and upsampling blocks only.
    expected = 100.0 * float(losses.droplet_loss(transformer(photos, return_activations=True)[1][ENCODER_BLOCKS:]))
    with tf.GradientTape() as tape:
        images, logits, activations = trainer(photos, training=True)
        droplet = trainer.perceptual_losses(photos, images, None, logits, activations)["droplet"]
    assert expected > 0.1 and float(droplet) == pytest.approx(expected, rel=1e-4)
    gradients = tape.gradient(droplet, transformer.trainable_weights)
    assert any(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients)
    assert float(trainer.perceptual_losses(photos, trainer(photos))["droplet"]) == 0.0  # Needs the activations.

    def fit(droplet_weight):
        keras.utils.set_random_seed(0)
        model = TransformerNet(**SMALL)
        fitted = FastStyleTrainer(model, _style(), feature_extractor=extractor, style_weight=1e-2,
                                  droplet_weight=droplet_weight)
        fitted.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = fitted.fit(photos, batch_size=4, epochs=10, verbose=0).history
        return float(losses.droplet_loss(model(photos, return_activations=True)[1][ENCODER_BLOCKS:])), history

    control, _ = fit(0.0)  # Training on the image losses alone grows the blob...
    penalized, history = fit(1000.0)
    assert control > 0.005 and penalized < 0.25 * control  # ...which the droplet loss keeps down.
    parts = sum(history[name][-1] for name in ("content_loss", "style_loss", "tv_loss", "saturation_loss",
                                                "droplet_loss"))
    np.testing.assert_allclose(parts, history["loss"][-1], rtol=1e-4)


# ---------------------------------------------------------------- train(): resume, outputs


class _KillAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise KeyboardInterrupt("killed")


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.saved, self.start = {}, None

    def on_train_begin(self, logs=None):
        self.start = (int(self.model.optimizer.iterations.numpy()), self.model.transformer.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        self.saved[int(self.model.optimizer.iterations.numpy())] = self.model.transformer.get_weights()


class _CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


@pytest.mark.slow
def test_steps_that_are_not_a_multiple_of_save_every_run_exactly(folder, style_file, tmp_path):
    counter = _CountSteps()
    result = train(_config(folder, style_file, tmp_path, steps=5, save_every=2), callbacks=[counter], verbose=0)
    assert counter.batches == 5 and result["steps"] == 5  # result["steps"] is optimizer.iterations.
    assert len(result["history"]["loss"]) == 3  # Keras epochs of 2, 2 and 1 steps.
    assert result["images_per_second"] * result["seconds"] == pytest.approx(5 * 2)  # 5 steps of batch 2.
    assert load_transformer(result["output"]).metadata["training"]["steps"] == 5


@pytest.mark.slow
def test_killed_run_resumes_from_its_backup(folder, style_file, tmp_path):
    backup = tmp_path / "backup"
    config = _config(folder, style_file, tmp_path, steps=5, save_every=2, backup_dir=str(backup))
    first = _Recorder()
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[first, _KillAt(3)], verbose=0)
    assert not (tmp_path / "out" / "net.keras").exists()  # Nothing half-written.
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    second = _Recorder()
    result = train(config, callbacks=[second], verbose=0)
    step, weights = second.start
    assert step == 2  # Resumed at the backup after step 2; steps 3 (lost) to 5 run again.
    for restored, backed_up in zip(weights, first.saved[2]):
        np.testing.assert_array_equal(restored, backed_up)
    assert result["steps"] == 5 and len(result["history"]["loss"]) == 2  # Epochs of steps 3-4 and 5.
    assert result["images_per_second"] * result["seconds"] == pytest.approx(3 * 2)  # This run's 3 steps.
    assert not backup.exists()  # BackupAndRestore removes its backup after a completed run.
    load_transformer(result["output"])


@pytest.mark.slow
def test_cli_trains_with_logs_checkpoints_and_mixed_precision(folder, style_file, tmp_path, capsys):
    output = tmp_path / "net.keras"
    status = train_main([
        "--style", str(style_file), "--data", str(folder), "--output", str(output), "--steps", "2",
        "--save-every", "1", "--batch-size", "2", "--image-size", "32", "--style-size", "48",
        "--loss-network", NETWORK, "--loss-weights-file", "none", "--log-dir", str(tmp_path / "logs"),
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--mixed-precision", "--style-weight", "0.01"])
    out = capsys.readouterr().out
    assert status == 0 and "Saved" in out and "1 unreadable skipped" in out
    model = load_transformer(output)
    assert model.dtype_policy.name == "float32"  # Saved for plain float32 inference.
    checkpoint = load_transformer(tmp_path / "ckpt" / "transformer.keras").metadata
    assert checkpoint["in_progress"] is True and "in_progress" not in model.metadata
    # The checkpoint of the last epoch describes the same run as the final network.
    assert checkpoint["training"]["steps"] == model.metadata["training"]["steps"] == 2
    assert checkpoint["training"]["config"] == model.metadata["training"]["config"]
    assert checkpoint["training"]["final_losses"] == model.metadata["training"]["final_losses"]
    assert sorted(p.name for p in (tmp_path / "logs" / "samples").glob("*.png")) == [
        "step_000001.png", "step_000002.png"]
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("case, message", [
    ("missing data", "data folder not found"),
    ("empty data", "no photos"),
    ("small style", "too small"),
    ("missing style", "not found"),
    ("corrupt init", "corrupt"),
    ("not a transformer", "not an nst_tf TransformerNet"),
    ("savedmodel init", "--init-model takes the .keras file of a trained network, not a SavedModel folder"),
    ("output folder", "--output is a folder"),
    ("bad loss weights", "not found"),
])
def test_cli_bad_input_exits_2_with_one_line(folder, style_file, tmp_path, capsys, case, message):
    args = {"--style": str(style_file), "--data": str(folder), "--output": str(tmp_path / "net.keras")}
    if case == "missing data":
        args["--data"] = str(tmp_path / "nowhere")
    elif case == "empty data":
        (tmp_path / "empty").mkdir()
        args["--data"] = str(tmp_path / "empty")
    elif case == "small style":
        args["--style"] = str(write_image(tmp_path / "tiny.png", (20, 20)))
    elif case == "missing style":
        args["--style"] = str(tmp_path / "missing.jpg")
    elif case == "corrupt init":
        (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 corrupt")
        args["--init-model"] = str(tmp_path / "bad.keras")
    elif case == "not a transformer":
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(tmp_path / "dense.keras")
        args["--init-model"] = str(tmp_path / "dense.keras")
    elif case == "savedmodel init":
        (tmp_path / "servable" / "1").mkdir(parents=True)
        (tmp_path / "servable" / "1" / "saved_model.pb").write_bytes(b"")
        args["--init-model"] = str(tmp_path / "servable" / "1")
    elif case == "output folder":
        (tmp_path / "dir.keras").mkdir()
        args["--output"] = str(tmp_path / "dir.keras")
    argv = [item for pair in args.items() for item in pair] + [
        "--steps", "1", "--save-every", "1", "--image-size", "32", "--loss-network", NETWORK,
        "--loss-weights-file", str(tmp_path / "no_weights.h5") if case == "bad loss weights" else "none"]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (tmp_path / "net.keras").exists()


_TWO_CPUS = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
sys.path.insert(0, {str(ROOT / "tests")!r})
import numpy as np, keras, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from nst_tf.training import TrainConfig, train
"""


def _run_on_two_cpus(code):
    # Logical devices must be configured before TensorFlow initializes them: a fresh process
    # (one MirroredStrategy per process: two would collide in TensorFlow's collective keys).
    run = subprocess.run([sys.executable, "-c", _TWO_CPUS + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_train_with_mirrored_strategy_on_two_cpu_devices_equals_one_device(folder, style_file, tmp_path):
    # Keras builds a model under a strategy from a first batch, then trains from a fresh iterator:
    # only a photo stream that is the same from every iterator trains on the seeded batches.
    result = _run_on_two_cpus(f"""
        losses = {{}}
        for strategy in ("default", "mirrored"):
            result = train(TrainConfig(style={str(style_file)!r}, data={str(folder)!r}, output={str(tmp_path)!r}
                                       + f"/{{strategy}}.keras", strategy=strategy, steps=2, save_every=1,
                                       batch_size=2, image_size=32, loss_network="squeezenet1_1",
                                       loss_weights_file=None, style_size=48), verbose=0)
            losses[strategy] = result["history"]["loss"]
            assert result["steps"] == 2
        print(json.dumps(losses))
    """)
    assert np.all(np.isfinite(result["mirrored"]))
    np.testing.assert_allclose(result["mirrored"], result["default"], rtol=1e-4)
    photos = _photos(2)
    default, mirrored = (np.asarray(load_transformer(tmp_path / f"{name}.keras")(photos))
                         for name in ("default", "mirrored"))
    assert np.abs(default - mirrored).max() < 0.05  # Grey levels; different batches differ by tens.


@pytest.mark.slow
def test_mirrored_gradients_equal_single_device_gradients():
    # One SGD step on the same batch: the replicas' gradients must add up to the single-device one.
    result = _run_on_two_cpus("""
        from nst_tf.features import FeatureExtractor
        from nst_tf.training import FastStyleTrainer
        from nst_tf.transformer import TransformerNet
        from test_training import SMALL, _photos, _style
        weights = {}
        keras.utils.set_random_seed(0)
        initial = TransformerNet(**SMALL)
        initial.build((None, None, None, 3))
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        for name, strategy in (("default", tf.distribute.get_strategy()),
                               ("mirrored", tf.distribute.MirroredStrategy(devices))):
            with strategy.scope():
                keras.utils.set_random_seed(0)
                extractor = FeatureExtractor(["fire3", "conv1", "fire2"], "squeezenet1_1", weights=None)
                network = TransformerNet(**SMALL)
                network.build((None, None, None, 3))
                network.set_weights(initial.get_weights())
                trainer = FastStyleTrainer(network, _style(), feature_extractor=extractor,
                                           content_layers=["fire3"], style_layers=["conv1", "fire2"])
                trainer.compile(optimizer=keras.optimizers.SGD(1e-3))
            trainer.fit(_photos(4), batch_size=4, epochs=1, shuffle=False, verbose=0)
            weights[name] = trainer.transformer.get_weights()
        diff = max(float(np.abs(a - b).max()) for a, b in zip(weights["default"], weights["mirrored"]))
        step = max(float(np.abs(a - b).max()) for a, b in zip(weights["default"], initial.get_weights()))
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "diff": diff, "step": step}))
    """)
    assert result["replicas"] == 2
    assert result["step"] > 1e-3 and result["diff"] < 1e-3 * result["step"]


# ---------------------------------------------------------------- multi-style training (Dumoulin et al. 2017)


def _per_style_loss(trainer, photos, count):
    return [float(trainer.perceptual_losses(photos, trainer({"images": photos, "style": tf.fill([len(photos)], k)}),
                                            tf.fill([len(photos)], k))["total"]) for k in range(count)]


@pytest.mark.slow
def test_multi_style_fit_lowers_every_styles_loss(extractor):
    from nst_tf import data

    keras.utils.set_random_seed(0)
    net = TransformerNet(**SMALL, style_names=["stripes", "dots", "photo"])
    styles = [_style(seed=3), _style(seed=9)[:, :, ::-1] * 0.5 + 60, None]
    trainer = FastStyleTrainer(net, styles, feature_extractor=extractor, style_weight=[1e-2, 2e-2, 5.0])
    assert trainer.loss_weights[1] == (1e-2, 2e-2, 0.0)  # The photo style has content loss only.
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    photos = _photos(4)
    before = _per_style_loss(trainer, photos, 3)
    batches = tf.data.Dataset.from_tensor_slices(photos).repeat().batch(4)
    trainer.fit(data.with_random_styles(batches, 3, seed=0), epochs=1, steps_per_epoch=30, verbose=0)
    after = _per_style_loss(trainer, photos, 3)
    assert all(a < 0.8 * b for a, b in zip(after, before)), (before, after)


def test_balanced_style_weights_equalize_the_photo_loss(extractor):
    from nst_tf.training import balanced_style_weights, style_loss_of_photos

    net = TransformerNet(**SMALL, style_names=["a", "b", "photo"])
    trainer = FastStyleTrainer(net, [_style(seed=3), _style(seed=3) * 0.3, None], feature_extractor=extractor)
    losses_of_photos = style_loss_of_photos(trainer, _photos(4))
    assert losses_of_photos[2] == 0 and losses_of_photos[0] != losses_of_photos[1]
    weights = balanced_style_weights(losses_of_photos, 0.01)
    products = [w * loss for w, loss in zip(weights, losses_of_photos)][:2]
    np.testing.assert_allclose(products[0], products[1], rtol=1e-9)
    assert weights[2] == 0 and np.median(weights[:2]) != 0


@pytest.mark.slow
def test_train_multi_style_saves_names_and_reproducible_metadata(folder, style_file, tmp_path):
    other = write_image(tmp_path / "other.png", (40, 40), seed=7)
    config = _config(folder, style_file, tmp_path, style=(str(style_file), str(other)), photo_style=True,
                     balance_style_weights=True, width_multiplier=0.5, steps=4, save_every=2, flip=True)
    result = train(config)
    model = load_transformer(config.output)
    assert model.style_names == ["style", "other", "photo"] and model.channels == (16, 32, 64)
    meta = model.metadata
    assert meta["training"]["config"] == json.loads(json.dumps(dataclasses_asdict(config)))
    assert meta["training"]["steps"] == result["steps"] == 4
    weights = {name: entry["style_weight"] for name, entry in meta["styles"].items()}
    assert weights["photo"] == 0 and weights["style"] > 0 and weights["other"] > 0
    assert set(meta["training"]["final_losses"]) >= {"loss", "content_loss", "style_loss", "tv_loss"}
    # The saved configuration repeats the run.
    again = TrainConfig(**{**meta["training"]["config"], "output": str(tmp_path / "again.keras")})
    assert again.names() == model.style_names


@pytest.mark.slow
def test_added_style_trains_only_its_own_row(folder, style_file, tmp_path):
    other = write_image(tmp_path / "other.png", (40, 40), seed=7)
    base_config = _config(folder, style_file, tmp_path, style=(str(style_file),), photo_style=True, steps=2,
                          save_every=2, output=str(tmp_path / "base.keras"))
    train(base_config)
    base = load_transformer(base_config.output)
    config = _config(folder, style_file, tmp_path, style=None, add_style=str(other), init_model=base_config.output,
                     steps=4, save_every=2, learning_rate=0.05, output=str(tmp_path / "added.keras"))
    train(config)
    added = load_transformer(config.output)
    assert added.style_names == ["style", "photo", "other"]
    x = _photos(2)
    for k in range(2):
        np.testing.assert_array_equal(added(x, style=[k, k]), base(x, style=[k, k]))  # Bit-identical.
    assert np.abs(np.asarray(added(x, style=[2, 2])) - np.asarray(base(x, style=[0, 0]))).mean() > 0.1
    assert added.metadata["added_styles"][0]["name"] == "other" and "other" in added.metadata["styles"]


@pytest.mark.slow
def test_continuing_a_multi_style_network_keeps_its_styles(folder, style_file, tmp_path):
    other = write_image(tmp_path / "other.png", (40, 40), seed=7)
    base_config = _config(folder, style_file, tmp_path, style=(str(style_file), str(other)), photo_style=True,
                          steps=2, save_every=2, output=str(tmp_path / "base.keras"))
    train(base_config)
    config = _config(folder, style_file, tmp_path, style=(str(style_file), str(other)), photo_style=True,
                     init_model=base_config.output, steps=2, save_every=2, output=str(tmp_path / "more.keras"))
    train(config)
    base, more = load_transformer(base_config.output), load_transformer(config.output)
    assert more.style_names == base.style_names == ["style", "other", "photo"]
    x = _photos(1)
    assert np.abs(np.asarray(more(x, style=[1])) - np.asarray(base(x, style=[1]))).max() > 0
    swapped = _config(folder, style_file, tmp_path, style=(str(other), str(style_file)), photo_style=True,
                      init_model=base_config.output, steps=2, save_every=2, output=str(tmp_path / "bad.keras"))
    with pytest.raises(ConfigError, match="in its order: style, other, photo. Received: other, style, photo"):
        train(swapped)
    assert not (tmp_path / "bad.keras").exists()


@pytest.mark.parametrize("case, message", [
    ("add-without-init", "--add-style needs --init-model"),
    ("add-to-single", "multi-style network only"),
    ("no-style", "Give the style image"),
])
def test_multi_style_cli_bad_input(folder, style_file, tmp_path, capsys, case, message):
    single = tmp_path / "single.keras"
    TransformerNet(**SMALL).save(single) if case == "add-to-single" else None
    args = {"add-without-init": ["--add-style", str(style_file)],
            "add-to-single": ["--add-style", str(style_file), "--init-model", str(single)],
            "no-style": []}[case]
    code = train_main(args + ["--data", str(folder), "--output", str(tmp_path / "o.keras"), "--steps", "1",
                              "--loss-network", NETWORK, "--loss-weights-file", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and not (tmp_path / "o.keras").exists()


def dataclasses_asdict(config):  # noqa: D103
    import dataclasses

    return dataclasses.asdict(config)


# ---------------------------------------------------------------- inputs spared, backups tied to their run


def test_output_onto_the_init_model_is_refused(folder, style_file, tmp_path, capsys):
    init = tmp_path / "init.keras"
    _small_network().save(init)
    before = init.read_bytes()
    status = train_main(["--style", str(style_file), "--data", str(folder), "--output", str(init),
                         "--init-model", str(init), "--steps", "1", "--save-every", "1", "--image-size", "32",
                         "--loss-network", NETWORK, "--loss-weights-file", "none"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "overwrite an input" in err and "\n" not in err
    assert init.read_bytes() == before


def _small_network():
    network = TransformerNet(**SMALL)
    network.build((None, None, None, 3))
    return network


@pytest.mark.slow
def test_backup_of_another_run_is_refused_with_the_differing_settings(folder, style_file, tmp_path):
    backup = tmp_path / "backup"
    config = _config(folder, style_file, tmp_path, steps=4, save_every=1, backup_dir=str(backup))
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_KillAt(2)], verbose=0)
    assert (backup / "training_metadata.json").is_file()
    other_style = tmp_path / "other_style.png"
    keras.utils.save_img(other_style, _style(seed=9)[0], scale=False)
    for change, named in (({"learning_rate": 0.01}, "learning_rate=0.001 in the backup, 0.01 now"),
                          ({"steps": 8}, "steps=4 in the backup, 8 now"),
                          ({"style": str(other_style)}, "style=")):
        with pytest.raises(ConfigError, match="start afresh") as error:
            train(dataclasses.replace(config, **change), verbose=0)
        assert named in str(error.value)
    assert (backup / "training_metadata.json").is_file()  # The backup is left for the run it belongs to.


def test_a_folder_that_is_not_a_backup_is_never_used_nor_deleted(folder, style_file, tmp_path):
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds no run settings"):
        train(_config(folder, style_file, tmp_path, backup_dir=str(documents)), verbose=0)
    with pytest.raises(ConfigError, match="deleted when the run completes"):
        train(_config(folder, style_file, tmp_path, backup_dir=str(tmp_path)), verbose=0)  # Holds the photos.
    assert (documents / "notes.txt").read_text() == "keep me" and folder.is_dir()


@pytest.mark.slow
def test_sigterm_keeps_the_backup_and_the_rerun_resumes(folder, style_file, tmp_path):
    backup = tmp_path / "backup"
    argv = ["--style", str(style_file), "--data", str(folder), "--output", str(tmp_path / "net.keras"),
            "--steps", "100000", "--save-every", "1", "--batch-size", "2", "--image-size", "32",
            "--style-size", "48", "--loss-network", NETWORK, "--loss-weights-file", "none", "--backup-dir", str(backup)]
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from nst_tf.cli import train_main; "
            f"sys.exit(train_main({argv!r}))")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    metadata = backup / "training_metadata.json"
    try:
        while not metadata.is_file() and process.poll() is None:
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    assert json.loads(metadata.read_text())["epoch"] >= 1  # The rerun starts after the backed-up steps.


# ---------------------------------------------------------------- pixel objective


@pytest.fixture
def pairs(tmp_path):
    """Four photos and their "stylized" targets (a fixed colour change of the centre crop), as PNG."""
    from nst_tf import data

    photos, targets = tmp_path / "pair_photos", tmp_path / "targets"
    photos.mkdir()
    targets.mkdir()
    for i in range(4):
        photo = write_image(photos / f"p{i}.png", (44, 36), seed=i, pattern="photo" if i % 2 else "noise")
        crop = data.center_crops([str(photo)], 32)[0]
        keras.utils.save_img(targets / f"p{i}.png", (255 - crop)[..., ::-1], scale=False)
    return photos, targets


def _pixel_args(pairs, style_file, tmp_path, *extra):
    photos, targets = pairs
    return ["--style", str(style_file), "--data", str(photos), "--output", str(tmp_path / "net.keras"),
            "--objective", "pixel", "--targets", str(targets), "--batch-size", "2", "--image-size", "32",
            *extra]


@pytest.mark.slow
def test_pixel_objective_lowers_the_distance_to_the_targets(pairs, style_file, tmp_path, capsys):
    args = _pixel_args(pairs, style_file, tmp_path, "--steps", "30", "--save-every", "10", "--learning-rate",
                       "1e-2", "--width-multiplier", "0.25", "--tv-weight", "0.5", "--flip")
    assert train_main(args) == 0, capsys.readouterr().err
    model = load_transformer(tmp_path / "net.keras")
    training = model.metadata["training"]
    losses = training["final_losses"]
    assert training["objective"] == "pixel" and training["targets"] == str(pairs[1])
    assert training["config"]["objective"] == "pixel" and training["config"]["targets"] == str(pairs[1])
    assert losses["pixel_loss"] + losses["tv_loss"] == pytest.approx(losses["loss"], rel=1e-5)
    assert losses["tv_loss"] > 0
    # The distance to the targets on the training pairs, after 30 steps and at the start (same seed).
    from nst_tf import data

    photos = data.center_crops(sorted(str(p) for p in pairs[0].iterdir()), 32)
    targets = np.stack([keras.utils.img_to_array(keras.utils.load_img(p)) for p in sorted(pairs[1].iterdir())])
    trained = float(np.mean((np.asarray(model(photos)) - targets) ** 2))
    keras.utils.set_random_seed(0)
    untrained = float(np.mean((np.asarray(TransformerNet(width_multiplier=0.25)(photos)) - targets) ** 2))
    assert trained < 0.7 * untrained


@pytest.mark.parametrize("case, message", [
    ("missing pairs", "2 of 4 photos have no target of the same name in the targets folder (first: p1, p3)"),
    ("targets without pixel", "--objective pixel and --targets go together"),
    ("pixel without targets", "--objective pixel and --targets go together"),
    ("two styles", "single-style network"),
    ("no targets folder", "Targets folder not found"),
])
def test_pixel_objective_bad_input_exits_2_with_one_line(pairs, style_file, tmp_path, capsys, case, message):
    args = _pixel_args(pairs, style_file, tmp_path, "--steps", "1")
    if case == "missing pairs":
        for stem in ("p1", "p3"):
            (pairs[1] / f"{stem}.png").unlink()
    elif case == "targets without pixel":
        args.remove("--objective")
        args.remove("pixel")
    elif case == "pixel without targets":
        args = args[:args.index("--targets")] + args[args.index("--targets") + 2:]
    elif case == "two styles":
        args[args.index("--style") + 1:args.index("--style") + 1] = [str(style_file)]
    elif case == "no targets folder":
        args[args.index("--targets") + 1] = str(tmp_path / "nowhere")
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (tmp_path / "net.keras").exists()
