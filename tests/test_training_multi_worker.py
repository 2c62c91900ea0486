"""Training across machines: MultiWorkerMirroredStrategy with two worker processes on loopback.

Each worker is a process of its own with its own ``TF_CONFIG`` (127.0.0.1 only, ports from
``serving.testing.free_port``) that runs :func:`nst_tf.training.train` with
``strategy="multi-worker"``, as a user would on two machines.  Every wait is bounded.
"""

import json
import os
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
    results, ((w0, local0, out0), (_, local1, out1), (ws, _, outs)) = runs
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
