"""Tests of nst_tf.interrupts: SIGTERM handled as Ctrl-C, so that a run saves its work once."""

import os
import signal

import pytest

from nst_tf.interrupts import EXIT_TERMINATED, terminate_as_interrupt


def test_sigterm_raises_keyboard_interrupt_once_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), terminate_as_interrupt() as received:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10 ** 6):  # The handler runs between bytecodes, at the latest here.
            pass
    assert received.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
    assert EXIT_TERMINATED == 143


def test_a_second_sigterm_does_not_interrupt_the_saving_the_first_started():
    saved = False
    with terminate_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10 ** 6):
                pass
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10 ** 6):
                pass
            saved = True
    assert saved
