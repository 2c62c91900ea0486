"""Tests of nst_tf.training and the train command: loss, fit, resume, strategies, bad input.

The loss network is SqueezeNet with seeded random weights (``weights=None``) and
images are 32-48 px, so every test runs in seconds on a CPU.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import ROOT, write_image
from nst_tf.cli import train_main
from nst_tf.errors import ConfigError, ImageError
from nst_tf.features import FeatureExtractor
from nst_tf.training import DEFAULT_LAYERS, FastStyleTrainer, TrainConfig, train
from nst_tf.transformer import TransformerNet, load_transformer

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
    ({"strategy": "tpu"}, "--strategy"), ({"output": "net.h5"}, "--output"), ({"loss_network": "resnet"}, "backbone"),
    ({"style_size": 4}, "--style-size"), ({"save_every": 0}, "--save-every"),
])
def test_config_rejects_bad_values(overrides, flag):
    with pytest.raises(ConfigError, match=flag) as info:
        TrainConfig(**{"style": "s.jpg", "data": "d", "output": "o.keras", **overrides})
    assert "Received:" in str(info.value) and "\n" not in str(info.value)


def test_total_steps_is_a_multiple_of_save_every():
    assert TrainConfig("s", "d", "o.keras", steps=20).total_steps(1000) == 20  # Up to save_every: exactly.
    assert TrainConfig("s", "d", "o.keras", steps=150).total_steps(1000) == 200
    assert TrainConfig("s", "d", "o.keras", epochs=1.0, save_every=2).total_steps(10) == 4  # ceil(10 / 4) = 3 -> 4
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


@pytest.mark.slow
def test_killed_run_resumes_from_its_backup(folder, style_file, tmp_path):
    backup = tmp_path / "backup"
    config = _config(folder, style_file, tmp_path, steps=6, save_every=2, backup_dir=str(backup))
    first = _Recorder()
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[first, _KillAt(3)], verbose=0)
    assert not (tmp_path / "out" / "net.keras").exists()  # Nothing half-written.
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    second = _Recorder()
    result = train(config, callbacks=[second], verbose=0)
    step, weights = second.start
    assert step == 2  # Resumed at the backup after step 2; steps 3 (lost) to 6 run again.
    for restored, backed_up in zip(weights, first.saved[2]):
        np.testing.assert_array_equal(restored, backed_up)
    assert result["steps"] == 6 and len(result["history"]["loss"]) == 2
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
    load_transformer(tmp_path / "ckpt" / "transformer.keras")
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
def test_train_with_mirrored_strategy_on_two_cpu_devices(folder, style_file, tmp_path):
    result = _run_on_two_cpus(f"""
        result = train(TrainConfig(style={str(style_file)!r}, data={str(folder)!r}, output={str(tmp_path)!r}
                                   + "/mirrored.keras", strategy="mirrored", steps=2, save_every=1, batch_size=2,
                                   image_size=32, loss_network="squeezenet1_1", loss_weights_file=None,
                                   style_size=48), verbose=0)
        print(json.dumps({{"steps": result["steps"], "loss": result["history"]["loss"]}}))
    """)
    assert result["steps"] == 2 and all(np.isfinite(result["loss"]))
    load_transformer(tmp_path / "mirrored.keras")


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
