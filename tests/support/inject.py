"""Asynchronous exceptions, as dramatiq's TimeLimit/Shutdown deliver them."""

from __future__ import annotations

import ctypes
import threading


class Injected(BaseException):
    """Stands for dramatiq's TimeLimitExceeded / Shutdown."""


def inject(thread: threading.Thread, exc: type[BaseException]) -> None:
    """Raise ``exc`` in ``thread`` at its next bytecode boundary."""
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))
