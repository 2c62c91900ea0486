"""The stylize command's TensorFlow process settings (nst_tf.cli.configure_stylize_process)."""

import json
import os
import subprocess
import sys

import pytest

# Every test runs fresh Python processes that import TensorFlow.
pytestmark = pytest.mark.slow

PROBE = """
import json, os
from nst_tf import cli
{call}
import tensorflow as tf
print(json.dumps({{"frozen": os.environ.get("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"),
                  "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}}))
"""


def _probe(call, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS",
                                                               "TF_NUM_INTEROP_THREADS")}
    result = subprocess.run([sys.executable, "-c", PROBE.format(call=call)], capture_output=True, text=True,
                            env=dict(environ, **env), timeout=120, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_stylize_process_freezes_weights_and_runs_one_op_at_a_time():
    assert _probe("cli.configure_stylize_process()") == {"frozen": "1", "inter_op": 1}


def test_squeezenet_keeps_concurrent_ops():
    assert _probe("cli.configure_stylize_process(one_op_at_a_time=False)") == {"frozen": "1", "inter_op": 0}


def test_library_processes_keep_tensorflow_defaults():
    assert _probe("") == {"frozen": None, "inter_op": 0}


def test_a_users_own_settings_are_kept():
    assert _probe("cli.configure_stylize_process()", TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="0",
                  TF_NUM_INTEROP_THREADS="2") == {"frozen": "0", "inter_op": 0}
