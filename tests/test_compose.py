"""real_pool_wrapper(): the release mechanism on other PostgreSQL-based backends.

The composed engines run end to end in integrations/composed; here, what the
factory builds and what it refuses.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.postgresql.base import DatabaseWrapper as PGWrapper
from django.db.backends.postgresql.creation import DatabaseCreation
from django.db.backends.postgresql.operations import DatabaseOperations
from django.db.backends.postgresql.schema import DatabaseSchemaEditor

from django_pg_real_pool._setup import SetupAwareSchemaEditor
from django_pg_real_pool.base import NativePoolMixin
from django_pg_real_pool.compose import real_pool_wrapper
from django_pg_real_pool.dj_db_conn_pool.base import DjPoolMixin


class _Operations(DatabaseOperations):
    pass


class _SchemaEditor(DatabaseSchemaEditor):
    pass


class _Creation(DatabaseCreation):
    pass


class InstrumentedWrapper(PGWrapper):  # type: ignore[misc]
    """A third-party backend: its own classes and an override."""

    ops_class = _Operations
    SchemaEditorClass = _SchemaEditor
    creation_class = _Creation

    def get_connection_params(self) -> dict[str, Any]:
        return {**super().get_connection_params(), "application_name": "instrumented"}


def test_refuses_a_backend_not_based_on_postgresql() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        real_pool_wrapper("django.db.backends.sqlite3")
    assert "django.db.backends.sqlite3.base.DatabaseWrapper" in str(caught.value)
    assert "not derived from Django's PostgreSQL backend" in str(caught.value)


def test_refuses_a_backend_that_cannot_be_imported() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"'no_such\.backend'.*importing"):
        real_pool_wrapper("no_such.backend")


def test_refuses_an_unknown_pool() -> None:
    with pytest.raises(ImproperlyConfigured, match="pool must be 'native'"):
        real_pool_wrapper(PGWrapper, pool="pgbouncer")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pool", "mixin"), [("native", NativePoolMixin), ("dj_db_conn_pool", DjPoolMixin)]
)
def test_keeps_everything_the_base_adds(pool: str, mixin: type) -> None:
    wrapper = real_pool_wrapper(InstrumentedWrapper, pool=pool)  # type: ignore[arg-type]
    # One class per base and pool: Django builds wrappers per thread.
    assert real_pool_wrapper(InstrumentedWrapper, pool=pool) is wrapper  # type: ignore[arg-type]
    assert issubclass(wrapper, InstrumentedWrapper) and issubclass(wrapper, mixin)
    assert wrapper.__mro__.index(mixin) < wrapper.__mro__.index(InstrumentedWrapper)
    for part in ("ops_class", "features_class", "introspection_class", "client_class"):
        assert getattr(wrapper, part) is getattr(InstrumentedWrapper, part)
    # The base's own overrides stay, behind the engine's.
    settings_dict = copy.deepcopy(connections["default"].settings_dict)
    params = wrapper(settings_dict, alias="default").get_connection_params()
    assert params["application_name"] == "instrumented"
    assert "real_pool" not in params
    editor = wrapper.SchemaEditorClass
    assert issubclass(editor, InstrumentedWrapper.SchemaEditorClass)
    assert issubclass(editor, SetupAwareSchemaEditor)
    assert issubclass(wrapper.creation_class, InstrumentedWrapper.creation_class)
