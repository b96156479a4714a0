"""Which SQL leaves session state behind, and how a dirty connection is reset.

Once connections go back to the pool after every query, session state (a
``SET``, a temp table, a session advisory lock, ``LISTEN``...) outlives the
code that made it: the code's next query may run elsewhere, and the next
borrower inherits it. :func:`session_state_of` spots such statements from the
SQL text; :func:`discard_session` wipes a connection before anyone else gets
it, and :func:`clean` brings any returned connection back to a reusable state.

The check runs on every statement, so it is built to cost well under a
microsecond for ordinary queries: a match of the first keyword at the start of
the string, plus two substring searches in C, and a full regex only for the
rare candidates.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

logger = logging.getLogger("django_pg_real_pool")

_INTRANS_OR_ERROR = (TransactionStatus.INTRANS, TransactionStatus.INERROR)

# First keyword of statements that may change session state.
_FIRST_WORD = re.compile(r"\s*([A-Za-z]+)")
_CANDIDATE_WORDS = frozenset(
    {"SET", "RESET", "DISCARD", "LISTEN", "PREPARE", "DECLARE", "CREATE", "LOAD"}
)

# What the ORM sends: never session state by its first keyword.
_PLAIN_DML = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "WITH",
    "select",
    "insert",
    "update",
    "delete",
)

# Confirmations, applied to candidates only. Transaction-scoped forms
# (SET LOCAL, SET TRANSACTION, SET CONSTRAINTS, xact locks, set_config(..., true))
# leave nothing behind once the transaction ends.
_SESSION_STATEMENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE | re.DOTALL))
    for kind, pattern in (
        ("SET", r"\s*SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)"),
        ("RESET", r"\s*RESET\b"),
        ("DISCARD", r"\s*DISCARD\b"),
        ("LISTEN", r"\s*LISTEN\b"),
        ("PREPARE", r"\s*PREPARE\b"),
        ("DECLARE ... WITH HOLD", r"\s*DECLARE\b.*\bWITH\s+HOLD\b"),
        (
            "temporary object",
            r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:GLOBAL\s+|LOCAL\s+)?TEMP(?:ORARY)?\b",
        ),
        ("LOAD", r"\s*LOAD\b"),
    )
)
_ADVISORY_LOCK = re.compile(r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.IGNORECASE)
# set_config(name, value, is_local): only is_local = false is session-scoped; a
# placeholder might be either, so only a literal true counts as safe.
_SET_CONFIG = re.compile(r"\bset_config\s*\((?![^()]*,\s*true\s*\))", re.IGNORECASE)


def session_state_of(sql: object) -> str | None:
    """Return what session state ``sql`` leaves behind, or ``None``.

    Only ``str`` SQL is inspected; composed ``psycopg.sql`` objects and bytes
    pass unchecked (documented limitation).
    """
    if type(sql) is not str:
        return None
    if (
        not sql.startswith(_PLAIN_DML)
        and (match := _FIRST_WORD.match(sql)) is not None
        and (match.group(1).upper() in _CANDIDATE_WORDS)
    ):
        for kind, pattern in _SESSION_STATEMENTS:
            if pattern.match(sql):
                return kind
    if ("advisory" in sql or "ADVISORY" in sql) and _ADVISORY_LOCK.search(sql):
        return "session advisory lock"
    if ("set_config" in sql or "SET_CONFIG" in sql) and _SET_CONFIG.search(sql):
        return "set_config(..., false)"
    return None


def discard_session(raw: psycopg.Connection[object]) -> None:
    """Wipe all session state of an idle-able connection (``DISCARD ALL``).

    Rolls back first: ``DISCARD ALL`` refuses to run inside a transaction.
    psycopg notices ``DISCARD ALL`` and forgets its prepared statements.
    Raises on failure; the caller then discards the connection.
    """
    if raw.pgconn.transaction_status != TransactionStatus.IDLE:
        raw.rollback()
    if not raw.autocommit:
        raw.autocommit = True
    raw.execute("DISCARD ALL")


def clean(raw: Any, dirty: str | None, alias: str) -> bool:
    """Bring a returned connection back to idle, autocommit and, if ``dirty``
    (why), a wiped session: roll back an open transaction, close one
    mid-query or one that cannot be cleaned (its pool replaces it). True if
    it stays open."""
    try:
        if not raw.closed:
            status = raw.pgconn.transaction_status
            if status in _INTRANS_OR_ERROR:
                raw.rollback()
            elif status != TransactionStatus.IDLE:
                # Mid-query or unknown: no safe way back.
                raw.close()
        if not raw.closed:
            if dirty is not None:
                logger.debug("alias %r: resetting session (%s)", alias, dirty)
                discard_session(raw)
            elif not raw.autocommit:
                raw.autocommit = True
    except psycopg.Error as exc:
        logger.warning(
            "alias %r: discarding a connection that could not be cleaned: %s", alias, exc
        )
        raw.close()
    return not raw.closed
