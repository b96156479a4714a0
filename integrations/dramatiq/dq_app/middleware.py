"""Project middleware: a faster TimeLimit, and a deliberately buggy middleware."""

from __future__ import annotations

import threading
from typing import Any

from dramatiq.middleware import Middleware, TimeLimit
from dramatiq.worker import ConsumerThread

#: Message option asking LeakOnDelayedEnqueue to leak.
LEAK_OPTION = "leak_on_consumer_thread"


class QuickTimeLimit(TimeLimit):
    """TimeLimit checking deadlines every 50 ms (dramatiq's default: 1 s)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("interval", 50)
        super().__init__(**kwargs)


class LeakOnDelayedEnqueue(Middleware):
    """A buggy middleware: when a delayed message carrying :data:`LEAK_OPTION`
    is re-enqueued, it leaves an uncommitted write on the consumer thread,
    outside any message."""

    @property
    def actor_options(self) -> set[str]:
        return {LEAK_OPTION}

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        if not message.options.get(LEAK_OPTION):
            return
        if not isinstance(threading.current_thread(), ConsumerThread):
            return
        from django.db import transaction

        from .models import Note

        transaction.set_autocommit(False)
        Note.objects.create(marker=message.kwargs["marker"])
