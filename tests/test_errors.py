"""Tests of nst_tf.errors: every user mistake is an NstError that entry points turn into one line."""

import numpy as np
import pytest

from nst_tf import errors
from nst_tf.cli import main


@pytest.mark.parametrize("kind", [errors.ImageError, errors.ConfigError, errors.WeightsError,
                                  errors.OptimizationError])
def test_every_user_error_is_an_nst_error_and_a_value_error(kind):
    assert issubclass(kind, errors.NstError) and issubclass(kind, ValueError)


def test_an_optimization_error_keeps_the_last_finite_image():
    image = np.zeros((1, 2, 2, 3), np.float32)
    error = errors.OptimizationError("diverged at iteration 7", image=image)
    assert str(error) == "diverged at iteration 7" and error.image is image


def test_an_nst_error_becomes_one_line_and_exit_status_2(tmp_path, capsys):
    code = main(["stylize", "--content", str(tmp_path / "missing.jpg"), "--style", str(tmp_path / "s.jpg"),
                 "--output", str(tmp_path / "out.jpg")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "missing.jpg" in err
    assert not (tmp_path / "out.jpg").exists()
