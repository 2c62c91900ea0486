"""SIGTERM handled like Ctrl-C, so long runs stopped by ``timeout``, a scheduler or ``docker stop`` keep their work.

Python turns SIGINT into ``KeyboardInterrupt``, which the optimization loop and
training already answer by saving the latest image or keeping their backup.  SIGTERM,
by default, kills the process at once.  :func:`terminate_as_interrupt` makes SIGTERM
raise the same exception, so both signals take the same, tested path.
"""

import contextlib
import signal
import threading

EXIT_TERMINATED = 128 + signal.SIGTERM
"""Exit status of a run ended by SIGTERM (143), as a shell reports a process killed by it."""


class Received:
    """Which signal, if any, interrupted the block (``signal.SIGTERM`` or None)."""

    signal = None


@contextlib.contextmanager
def terminate_as_interrupt():
    """While the block runs, SIGTERM raises ``KeyboardInterrupt`` in the main thread.

    Only the first SIGTERM raises; later ones are ignored so that the work the first
    one triggered (saving the latest image) completes.  Outside the main thread,
    where Python cannot install handlers, the block runs unchanged.  The previous
    handler is restored on exit.

    Yields:
        Received: its ``signal`` is ``signal.SIGTERM`` once SIGTERM has arrived.
    """
    received = Received()
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        if received.signal is not None:
            return  # A repeated SIGTERM must not interrupt the saving that the first one started.
        received.signal = signum
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
