"""Ctrl-C as a request to finish what is under way, not an abort: ``asr stream -`` ends its live
input and prints the final transcript, ``asr train`` saves the step it is in (:class:`CtrlC`).
A second Ctrl-C interrupts at once, as Python's default handler does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


class CtrlC:
    """A context manager that turns the first SIGINT inside it into ``requested = True`` (and a call
    of ``on_request``), for the code inside to finish its step and stop; it puts Python's default
    handler back at once, so that a second Ctrl-C raises KeyboardInterrupt, and on exit.

    Active only where Python's default handler is installed, and in the main thread; elsewhere
    ``requested`` stays False and Ctrl-C raises KeyboardInterrupt as before.

    Example:
        >>> with CtrlC() as ctrl_c:
        ...     signal.raise_signal(signal.SIGINT)  # the first: a request
        >>> ctrl_c.requested, signal.getsignal(signal.SIGINT) is signal.default_int_handler
        (True, True)
    """

    def __init__(self, on_request: Callable[[], None] | None = None) -> None:
        self.on_request = on_request
        self.requested = self.active = False

    def __enter__(self) -> CtrlC:
        self.active = (threading.current_thread() is threading.main_thread()
                       and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self.active:
            signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.active = False

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the next Ctrl-C stops at once
        if self.on_request is not None:
            self.on_request()


def ignore_sigint(*_: object) -> None:
    """A worker process's start (a data loader's ``worker_init_fn``, a process pool's
    ``initializer``): the terminal's Ctrl-C reaches the whole process group, and a worker it ended
    would fail the main process's next batch, or print its own traceback; the main process decides
    (:class:`CtrlC`, KeyboardInterrupt) and ends its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
