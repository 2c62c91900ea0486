"""Test harness of the serving contract: tiny contract models and a development server subprocess.

The contract suite (``tests/test_serving.py``) runs against a server address.  By
default it calls :func:`prepare_contract_models` on a temporary folder and
:func:`start_dev_server` on loopback ports; to run it against a real
``tensorflow_model_server`` instead, prepare the folder once with::

    python -m serving.testing /tmp/contract_models

start TF Serving on it (``serving/README.md``, "Contract tests against TF Serving") and set
``NST_TF_SERVING_GRPC``, ``NST_TF_SERVING_REST`` and ``NST_TF_SERVING_MODELS``.

Contract models (tiny TransformerNets, ``filters=(4, 8, 8)``, one residual block,
seeded, exported with ``max_image_size=CONTRACT_MAX_IMAGE_SIZE``):

* ``contract``: versions 1 and 2 (policy ``all``), labels ``stable`` -> 1, ``canary`` -> 2.
* ``contract_live``: version 1 (policy ``latest``); the suite exports further versions
  from ``keras/contract_live_new.keras`` while the server runs.
* ``contract_styles``: version 1 of a multi-style network with the styles
  :data:`CONTRACT_STYLES` (random normalization parameters, so the styles differ).
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

from nst_tf.cli import add_verbose_argument, ArgumentParser, import_tensorflow, program_name

# The folder this package is imported from (the repository root, or site-packages when installed):
# a development server subprocess imports the same package from there.
_IMPORT_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONTRACT_MODEL = "contract"
LIVE_MODEL = "contract_live"
STYLES_MODEL = "contract_styles"
CONTRACT_STYLES = ("a", "b", "photo")
CONTRACT_MAX_IMAGE_SIZE = 64
CONTRACT_LABELS = {"stable": 1, "canary": 2}
_SEEDS = {"contract_1": 1, "contract_2": 2, "contract_live_1": 3, "contract_live_new": 4}

_CONFIG = """\
# Contract-test models (serving/testing.py). base_path values are as TF Serving sees them.
model_config_list {{
  config {{
    name: "{contract}"
    base_path: "{root}/{contract}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
{labels}  }}
  config {{
    name: "{live}"
    base_path: "{root}/{live}"
    model_platform: "tensorflow"
  }}
  config {{
    name: "{styles}"
    base_path: "{root}/{styles}"
    model_platform: "tensorflow"
  }}
}}
"""


def free_port(host="127.0.0.1"):
    """A TCP port that was free on `host` a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def contract_network(key):
    """The seeded tiny TransformerNet ``key`` (``contract_1``, ``contract_2``, ``contract_live_1``, ...)."""
    import keras

    from nst_tf.transformer import TransformerNet

    keras.utils.set_random_seed(_SEEDS[key])
    model = TransformerNet(filters=(4, 8, 8), num_residual_blocks=1)
    model.build((None, None, None, 3))
    return model


def contract_styles_network():
    """The seeded tiny multi-style TransformerNet of ``contract_styles``."""
    import keras
    import numpy as np

    from nst_tf.transformer import TransformerNet

    keras.utils.set_random_seed(5)
    model = TransformerNet(filters=(4, 8, 8), num_residual_blocks=1, style_names=list(CONTRACT_STYLES))
    model.build((None, None, None, 3))
    rng = np.random.default_rng(5)
    for weight in model.weights:
        if weight.path.endswith(("gamma", "beta")):
            weight.assign(rng.normal(1.0 if weight.path.endswith("gamma") else 0.0, 0.5, weight.shape))
    return model


def prepare_contract_models(directory, container_root=None):
    """Writes the contract models, their ``.keras`` files and ``models.config`` (idempotent).

    Args:
        directory: str or path-like. Folder to fill: ``contract/1``, ``contract/2``,
            ``contract_live/1``, ``keras/*.keras``, ``models.config``.
        container_root: str or None. The folder as the server sees it (``/models`` in
            Docker), written into the config's base paths; None uses `directory` itself.

    Returns:
        pathlib.Path of ``models.config``.
    """
    from nst_tf.export import export_model

    directory = pathlib.Path(directory).resolve()
    config = directory / "models.config"
    if config.is_file():
        return config
    (directory / "keras").mkdir(parents=True, exist_ok=True)
    for key in _SEEDS:
        model = contract_network(key)
        model.save(directory / "keras" / f"{key}.keras")
        if key != "contract_live_new":
            name, version = key.rsplit("_", 1)
            export_model(model, directory / name, int(version), max_image_size=CONTRACT_MAX_IMAGE_SIZE,
                         warmup_size=16)
    styles = contract_styles_network()
    styles.save(directory / "keras" / f"{STYLES_MODEL}.keras")
    export_model(styles, directory / STYLES_MODEL, 1, max_image_size=CONTRACT_MAX_IMAGE_SIZE, warmup_size=16)
    labels = "".join(f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in CONTRACT_LABELS.items())
    root = container_root.rstrip("/") if container_root else str(directory)
    text = _CONFIG.format(contract=CONTRACT_MODEL, live=LIVE_MODEL, styles=STYLES_MODEL, root=root, labels=labels)
    temp = config.with_suffix(".tmp")
    temp.write_text(text)
    os.replace(temp, config)
    return config


class DevServerProcess:
    """A ``python -m serving.dev_server`` subprocess; always call :meth:`stop` (or use ``with``).

    Attributes:
        grpc_address: str. ``127.0.0.1:<port>``.
        rest_url: str. ``http://127.0.0.1:<port>``.
        log_path: pathlib.Path. The server's stderr and stdout.
    """

    def __init__(self, process, grpc_port, rest_port, log_path):
        self.process = process
        self.grpc_address = f"127.0.0.1:{grpc_port}"
        self.rest_url = f"http://127.0.0.1:{rest_port}"
        self.log_path = pathlib.Path(log_path)

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, models, timeout=120.0):
        """Waits until every model in `models` has an AVAILABLE version (gRPC GetModelStatus).

        Raises:
            RuntimeError: the process died or `timeout` seconds passed; the message has the log's tail.
        """
        from .client import GrpcClient, ServingClientError

        deadline = time.monotonic() + timeout
        for model in models:
            with GrpcClient(self.grpc_address, model, timeout=5, retries=0) as client:
                while True:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"dev server exited with status {self.process.returncode}:\n"
                                           f"{self.log_tail()}")
                    try:
                        if client.is_available():
                            break
                    except ServingClientError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"dev server not ready after {timeout:g} s:\n{self.log_tail()}")
                    time.sleep(0.2)

    def memory_bytes(self):
        """Resident memory of the server process (Linux ``/proc``), or None."""
        try:
            for line in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_dev_server(config_file, log_path, base_path_prefix=None, models=(), timeout=120.0, extra_args=()):
    """Starts ``python -m serving.dev_server`` on free loopback ports and waits until `models` are served.

    Args:
        config_file: str or path-like. A models.config.
        log_path: str or path-like. File that receives the server's output.
        base_path_prefix: str or None. ``--model_base_path_prefix``.
        models: iterable of str. Models to wait for (none: return once started).
        timeout: float. Seconds to wait for readiness.
        extra_args: extra dev_server flags.

    Returns:
        DevServerProcess (stopped again if readiness fails).

    Raises:
        RuntimeError: the server died or was not ready in time.
    """
    path = os.pathsep.join([str(_IMPORT_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path}
    for attempt in range(3):  # Another process may take a free port before the server binds it.
        grpc_port, rest_port = free_port(), free_port()
        command = [sys.executable, "-m", f"{__package__}.dev_server", "--model_config_file", str(config_file),
                   "--port", str(grpc_port), "--rest_api_port", str(rest_port),
                   "--file_system_poll_wait_seconds", "0.5",
                   *(["--model_base_path_prefix", str(base_path_prefix)] if base_path_prefix else []), *extra_args]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = DevServerProcess(process, grpc_port, rest_port, log_path)
        try:
            server.wait_ready(models, timeout)
            return server
        except BaseException:
            server.stop()
            if attempt == 2 or "cannot listen" not in server.log_tail():
                raise
    raise AssertionError("unreachable")


def main(argv=None):
    parser = ArgumentParser(prog=program_name(f"{__package__}.testing"),
                                     description="Write the serving contract-test models and models.config.")
    parser.add_argument("directory", help="folder to fill (mount it at --container-root for TF Serving)")
    parser.add_argument("--container-root", default="/models",
                        help="the folder's path inside the server's container (%(default)s)")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    import_tensorflow(args.verbose)
    config = prepare_contract_models(args.directory, args.container_root)
    print(f"Wrote {config}; serve it with TF Serving (serving/README.md, 'Contract tests against TF Serving').")
    return 0


if __name__ == "__main__":
    sys.exit(main())
