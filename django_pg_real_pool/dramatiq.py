"""dramatiq middleware: the task bracket around every message.

Add it FIRST to the broker's middleware list (django-dramatiq:
``DRAMATIQ_BROKER["MIDDLEWARE"]``; plain dramatiq: ``broker.add_middleware(...,
before=...)``). dramatiq runs before-hooks in list order and after-hooks in
reverse order, so in the first position the bracket starts before any other
middleware queries and ends after all of them (``AdminMiddleware`` writes,
``Retries``/``Callbacks``/``Pipelines`` enqueue) and after ``TimeLimit``
disarmed its timer.

The hooks only map dramatiq's events onto :mod:`django_pg_real_pool._bracket`;
what is checked and repaired, and how it is reported, lives there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dramatiq.middleware import Middleware
from dramatiq.worker import ConsumerThread, WorkerThread

from . import _bracket

if TYPE_CHECKING:
    from dramatiq.broker import Broker, MessageProxy
    from dramatiq.message import Message
    from dramatiq.worker import Worker

__all__ = ["STRICT_OPTION", "STRICT_SETTING", "RealPoolMiddleware"]

logger = logging.getLogger(__name__)

#: Django setting: strict mode for every actor (default False).
STRICT_SETTING = _bracket.STRICT_SETTING
#: Actor and message option overriding the strict mode for one actor or message.
STRICT_OPTION = "real_pool_strict"

MIDDLEWARE_PATH = "django_pg_real_pool.dramatiq.RealPoolMiddleware"


class RealPoolMiddleware(Middleware):
    """Check, repair and report the database connections of every message.

    * before each message: the thread must be clean (repaired and reported
      if earlier code left something);
    * after each message, on every exit (success, failure, skip; the hook may
      run twice or be interrupted, and repeats safely): an open transaction is
      rolled back, a held or pinned connection goes back to the pool (reset if
      it carries session state), and one error record per leaking alias names
      the actor, the message id and what leaked;
    * on consumer threads, which query outside messages (a delayed message
      re-enqueued through django-dramatiq's ``AdminMiddleware``), after each
      enqueue, ack and nack; at thread and worker shutdown, in the thread that
      owns the connections; the pools close once every thread has stopped.

    ``strict=True`` (or the Django setting ``REAL_POOL_STRICT``, or the
    actor/message option ``real_pool_strict``) also fails a leaking message:
    it is rejected (dead-lettered), and unless the actor raised, its
    exception is a :class:`~django_pg_real_pool.LeakedConnection` (what the
    ``Results`` middleware stores). dramatiq swallows exceptions raised by
    hooks, so failing the message is the only way a leak can surface there.
    The actor's own exception is never replaced, and a failure of the
    middleware itself is logged, never raised into the worker.
    """

    def __init__(self, *, strict: bool | None = None) -> None:
        #: None: read the Django setting when a leak is found.
        self.strict = strict

    @property
    def actor_options(self) -> set[str]:
        return {STRICT_OPTION}

    # -- messages (worker threads) ------------------------------------------

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        _run(_bracket.begin, message.actor_name, message.message_id)

    def after_process_message(
        self,
        broker: Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        leaks = _run(_bracket.end, message.actor_name, message.message_id)
        if leaks:
            self._maybe_fail(broker, message, leaks, actor_raised=exception is not None)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        leaks = _run(_bracket.end, message.actor_name, message.message_id)
        if leaks:
            self._maybe_fail(broker, message, leaks, actor_raised=message.failed)

    # Acks run after after_process_message, on the worker thread (or on the
    # consumer thread for delayed messages and unknown actors): middleware
    # that queries there is covered too.
    def after_ack(self, broker: Broker, message: MessageProxy) -> None:
        _after_post_process(message, "acknowledged")

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        _after_post_process(message, "rejected")

    # -- consumer threads ---------------------------------------------------

    def after_enqueue(self, broker: Broker, message: Message[Any], delay: int | None) -> None:
        # Only on consumer threads (re-enqueue of a delayed message): anywhere
        # else an enqueue happens inside user code (actor.send() in a view or
        # an actor, maybe inside atomic()), which must be left alone.
        if isinstance(threading.current_thread(), ConsumerThread):
            _run(
                _bracket.check_and_repair,
                message.actor_name,
                message.message_id,
                phase="on a dramatiq consumer thread, after enqueueing a delayed message",
            )

    # -- shutdown -----------------------------------------------------------

    def before_worker_thread_shutdown(self, broker: Broker, thread: WorkerThread) -> None:
        _run(_bracket.release_thread, "dramatiq worker thread")

    def before_consumer_thread_shutdown(self, broker: Broker, thread: ConsumerThread) -> None:
        _run(_bracket.release_thread, f"dramatiq consumer thread ({thread.queue_name})")

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        # The main thread of the worker process (boot code may have queried).
        _run(_bracket.release_thread, "dramatiq worker process")

    def after_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        # Not in before_worker_shutdown: worker threads still finish their
        # messages after it, and would open new pools.
        _run(_bracket.close_pools)

    # -- strict mode --------------------------------------------------------

    def _is_strict(self, broker: Broker, message: MessageProxy) -> bool:
        option = message.options.get(STRICT_OPTION)
        if option is None:
            actor = broker.actors.get(message.actor_name)
            option = actor.options.get(STRICT_OPTION) if actor is not None else None
        return _bracket.resolve_strict(self.strict if option is None else bool(option))

    def _maybe_fail(
        self,
        broker: Broker,
        message: MessageProxy,
        leaks: list[_bracket.Leak],
        *,
        actor_raised: bool,
    ) -> None:
        try:
            if not self._is_strict(broker, message):
                return
            message.fail()
            if not actor_raised:
                message.stuff_exception(
                    _bracket.leaked_error(message.actor_name, message.message_id, leaks)
                )
        except Exception:
            logger.exception("django_pg_real_pool could not fail message %s", message.message_id)


def _after_post_process(message: MessageProxy, what: str) -> None:
    thread = threading.current_thread()
    if isinstance(thread, WorkerThread):
        phase = f"after the message was {what}"
    elif isinstance(thread, ConsumerThread):
        phase = f"on a dramatiq consumer thread, after the message was {what}"
    else:
        return
    _run(_bracket.check_and_repair, message.actor_name, message.message_id, phase=phase)


def _run(func: Callable[..., Any], *args: Any, **kwargs: Any) -> list[_bracket.Leak]:
    """Run one bracket step; a bug here is logged and never fails the message."""
    try:
        return func(*args, **kwargs) or []
    except Exception:
        logger.exception("django_pg_real_pool: %s failed in the dramatiq middleware", func.__name__)
        return []
    except BaseException:
        # An asynchronous exception (TimeLimitExceeded, Shutdown) landed in
        # the clean-up itself: finish the clean-up, then let the exception go
        # on as dramatiq expects (it then runs the after-hooks again).
        try:
            func(*args, **kwargs)
        except Exception:
            logger.exception(
                "django_pg_real_pool: %s failed in the dramatiq middleware", func.__name__
            )
        raise
