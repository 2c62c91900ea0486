"""Training across machines: MultiWorkerMirroredStrategy with two worker processes on loopback.

Each worker is a process of its own with its own ``TF_CONFIG`` (127.0.0.1 only, ports from
``serving.testing.free_port``) that runs :func:`nst_tf.training.train` with
``strategy="multi-worker"``, as a user would on two machines.  Every wait is bounded.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import ROOT, write_image
from serving.testing import free_port

STEPS, GLOBAL_BATCH = 3, 4

# One worker: train, then save its weights, the first local batch its shard of the photos gives, and
# its network's output on that batch.
_WORKER = """
import json, sys
import numpy as np
from nst_tf import data
from nst_tf import training
from nst_tf.training import TrainConfig

config = TrainConfig(**json.loads(sys.argv[1]))
seen = {}
make_strategy = training._strategy
training._strategy = lambda name: seen.setdefault("strategy", make_strategy(name))  # Keep what train() used.
result = training.train(config, verbose=0)
strategy = seen["strategy"]
photos = data.photo_dataset(data.scan_photos(config.data).files, config.image_size, config.batch_size,
                            seed=config.seed)
local = next(iter(strategy.experimental_distribute_dataset(photos)))
local = np.concatenate([np.asarray(t) for t in strategy.experimental_local_results(local)])
from nst_tf.stylizer import load_transformer
network = load_transformer(config.output)
stylized = np.asarray(network(np.asarray(local, np.float32)))
np.savez(config.output + ".npz", local=local, stylized=stylized, *network.get_weights())
# The weights the output does not depend on: shifting one by a random normal leaves the output as it is.
rng = np.random.default_rng(0)
unused = []
for index, weight in enumerate(network.weights):
    value = weight.numpy()
    weight.assign(value + rng.normal(0, 1, value.shape).astype(value.dtype))
    if np.abs(np.asarray(network(np.asarray(local, np.float32))) - stylized).max() < 1.0:  # Grey levels.
        unused.append(index)
    weight.assign(value)
print(json.dumps({"steps": result["steps"], "replicas": strategy.num_replicas_in_sync,
                  "strategy": type(strategy).__name__, "unused": unused,
                  "names": [weight.path for weight in network.weights]}))
"""

# One worker of a resumable run: train with the given config (its own --backup-dir), report where
# training began (after BackupAndRestore restored a backup) and, when told, stop after an epoch's
# backup and wait there to be killed.
_RESUMABLE_WORKER = """
import json, pathlib, sys, threading
import keras
import numpy as np
from nst_tf import training
from nst_tf.stylizer import load_transformer
from nst_tf.training import TrainConfig

config = TrainConfig(**json.loads(sys.argv[1]))
wait_after_epochs = int(sys.argv[2])  # 0: never.
seen = {"epochs": []}


class Probe(keras.callbacks.Callback):  # After train()'s own callbacks, BackupAndRestore among them.
    def on_train_begin(self, logs=None):
        seen["first_iteration"] = int(self.model.optimizer.iterations.numpy())
        np.savez(config.output + ".begin.npz", *self.model.transformer.get_weights())

    def on_epoch_begin(self, epoch, logs=None):
        seen["epochs"].append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == wait_after_epochs:  # This epoch's backup is written.
            np.savez(config.output + ".backed_up.npz", *self.model.transformer.get_weights())
            pathlib.Path(config.output + ".waiting").touch()
            threading.Event().wait()


result = training.train(config, callbacks=[Probe()], verbose=0)
np.savez(config.output + ".npz", *load_transformer(config.output).get_weights())
print(json.dumps({"steps": result["steps"], **seen}))
"""


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    photos = root / "photos"
    photos.mkdir()
    for i in range(8):
        write_image(photos / f"p{i}.png", (44, 36), seed=i, pattern="photo" if i % 2 else "noise")
    style = write_image(root / "style.png", (48, 48), seed=9)
    return root, photos, style


def _config(root, photos, style, output, **overrides):
    values = dict(style=str(style), data=str(photos), output=str(root / output), steps=STEPS, save_every=STEPS,
                  batch_size=GLOBAL_BATCH, image_size=32, loss_network="squeezenet1_1", loss_weights_file=None,
                  style_size=48, seed=0, learning_rate=1e-2, width_multiplier=0.25, num_residual_blocks=1)
    values.update(overrides)
    return values


def _env(tf_config=None, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "NST_TF_WORKER_TIMEOUT": str(timeout),
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _start(config, tf_config=None, timeout=60):
    return subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(config)], env=_env(tf_config, timeout),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _finish(process, limit=240):
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"worker still running after {limit} s: {err[-2000:]}")
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _weights(path):
    with np.load(path) as archive:
        return [archive[f"arr_{i}"] for i in range(len(archive.files))]


def _backup_epoch(folder):
    """The epoch of the last complete backup in a BackupAndRestore folder, or None."""
    try:
        return json.loads((folder / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):  # Not written yet, or being written.
        return None


def _wait_for(condition, processes, logs, limit=240):
    """Polls `condition` until it holds; fails when a process exits first or after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        for process, log in zip(processes, logs):
            if process.poll() is not None:
                pytest.fail(f"worker exited with {process.returncode} first: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {limit} s: {[log.read_text()[-1500:] for log in logs]}")
        time.sleep(0.1)


def _load(path):
    with np.load(path) as archive:
        weights = [archive[f"arr_{i}"] for i in range(len(archive.files) - 2)]
        return weights, archive["local"], archive["stylized"]


@pytest.fixture(scope="module")
def runs(problem):
    """Two workers of one cluster and one single process, all from seed 0, trained side by side."""
    root, photos, style = problem
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = [_start(_config(root, photos, style, f"worker{i}.keras", strategy="multi-worker"),
                      {"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(2)]
    single = _start(_config(root, photos, style, "single.keras"))
    results = [_finish(p) for p in workers] + [_finish(single)]
    return results, [_load(root / f"{n}.keras.npz") for n in ("worker0", "worker1", "single")]


@pytest.mark.slow
def test_two_workers_shard_the_photos_and_end_with_identical_weights(runs):
    results, ((w0, local0, _), (w1, local1, _), (_, global_batch, _)) = runs
    assert [r["replicas"] for r in results] == [2, 2, 1]
    assert all(r["steps"] == STEPS for r in results)
    # Sharding: the photo pipeline is a tf.data source of file names, not of files, so auto-sharding
    # falls back to DATA: every worker builds the same seeded global batch and keeps its half.
    assert local0.shape[0] == local1.shape[0] == GLOBAL_BATCH // 2
    np.testing.assert_array_equal(np.concatenate([local0, local1]), global_batch)
    between_workers = max(float(np.abs(a - b).max()) for a, b in zip(w0, w1))
    print(f"max |w_worker0 - w_worker1| = {between_workers:.3g}")
    assert between_workers == 0.0  # All-reduced gradients: the workers apply the very same update.


@pytest.mark.slow
def test_two_workers_equal_one_process_on_the_global_batch(runs):
    results, ((w0, _, out0), (_, _, out1), (ws, _, outs)) = runs
    # Weights the output does not depend on (conv biases that instance normalization subtracts again,
    # shifts that reach only such a convolution) have a gradient that is zero up to float round-off;
    # Adam divides it by its own magnitude and moves them by up to lr a step, in no particular direction.
    unused = set(results[2]["unused"])
    assert unused == set(results[0]["unused"]) and all("bias" in results[2]["names"][i] or "beta" in
                                                       results[2]["names"][i] for i in unused)
    differences = {results[2]["names"][i]: float(np.abs(a - b).max()) for i, (a, b) in enumerate(zip(w0, ws))}
    used = [d for i, d in enumerate(differences.values()) if i not in unused]
    outputs = float(np.abs(np.concatenate([out0, out1]) - outs).max())
    print(f"|w_worker0 - w_single|: max {max(used):.3g} over the {len(used)} weights the output depends on, "
          f"{max(differences.values()):.3g} over all; outputs: max {outputs:.3g} grey levels")
    # Float32 round-off: the cluster sums two half-batch gradients, one process the whole batch at once
    # (about 1e-6 relative); 1e-4 is a hundredth of one Adam step at learning rate 1e-2.
    # The outputs: a twentieth of a grey level, far below what an 8-bit image shows.
    assert max(used) <= 1e-4, differences
    np.testing.assert_allclose(np.concatenate([out0, out1]), outs, atol=5e-2)


@pytest.mark.slow
def test_a_worker_that_does_not_answer_is_a_one_line_error(problem, tmp_path):
    root, photos, style = problem
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}  # Worker 1 never starts.
    env = _env({"cluster": cluster, "task": {"type": "worker", "index": 0}}, timeout=8)
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--style", str(style), "--data", str(photos),
                          "--output", str(tmp_path / "net.keras"), "--strategy", "multi-worker", "--steps", "1",
                          "--image-size", "32", "--loss-network", "squeezenet1_1", "--loss-weights-file", "none"],
                         env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "did not answer within 8 s" in lines[0] and cluster["worker"][1] in lines[0] and "TF_CONFIG" in lines[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert time.monotonic() - start < 100
    assert not (tmp_path / "net.keras").exists()


@pytest.mark.slow
def test_a_killed_worker_resumes_with_the_cluster_from_its_backup(problem, tmp_path):
    _, photos, style = problem
    steps, backed_up = 4, 2  # One backup per step; worker 1 is killed after the second.
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}

    def start(index, wait_after_epochs=0, log=None):  # The same command each time, as a restarted cluster runs it.
        config = _config(tmp_path, photos, style, f"worker{index}.keras", strategy="multi-worker", steps=steps,
                         save_every=1, backup_dir=str(tmp_path / f"backup{index}"))
        command = [sys.executable, "-c", _RESUMABLE_WORKER, json.dumps(config), str(wait_after_epochs)]
        env = _env({"cluster": cluster, "task": {"type": "worker", "index": index}})
        if log is None:
            return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        with log.open("w") as output:  # A file: nobody reads a pipe while the test waits.
            return subprocess.Popen(command, env=env, stdout=output, stderr=output, cwd=ROOT)

    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    first = [start(0, log=logs[0]), start(1, wait_after_epochs=backed_up, log=logs[1])]
    try:
        # Worker 1 waits after its backup; worker 0 has written its own and waits in the next step's all-reduce.
        _wait_for(lambda: (tmp_path / "worker1.keras.waiting").exists()
                  and _backup_epoch(tmp_path / "backup0") == backed_up, first, logs)
        first[1].send_signal(signal.SIGKILL)
        assert first[1].wait(timeout=60) == -signal.SIGKILL
        # Worker 0 cannot finish without its peer: its collective fails, and it says what to do.
        assert first[0].wait(timeout=240) != 0
        assert "A worker of the cluster stopped answering" in logs[0].read_text(), logs[0].read_text()[-3000:]
    finally:
        for process in first:  # The cluster restarts with the same command.
            process.kill()
            process.communicate()
    assert _backup_epoch(tmp_path / "backup1") == backed_up
    assert not (tmp_path / "worker0.keras").exists() and not (tmp_path / "worker1.keras").exists()

    results = [_finish(process) for process in [start(0), start(1)]]
    for result in results:
        assert result["first_iteration"] == backed_up  # The optimizer continues from the backup, not from 0.
        assert result["epochs"] == list(range(backed_up, steps)) and result["steps"] == steps
    restored = [_weights(tmp_path / f"worker{i}.keras.begin.npz") for i in range(2)]
    for restored_weights in restored:
        for a, b in zip(_weights(tmp_path / "worker1.keras.backed_up.npz"), restored_weights):
            np.testing.assert_array_equal(a, b)
    final = [_weights(tmp_path / f"worker{i}.keras.npz") for i in range(2)]
    assert max(float(np.abs(a - b).max()) for a, b in zip(*final)) == 0.0
    assert not any(np.array_equal(a, b) for a, b in zip(final[1], restored[1]) if a.size > 100)  # It trained on.
    assert not (tmp_path / "backup0").exists() and not (tmp_path / "backup1").exists()  # Deleted when done.
