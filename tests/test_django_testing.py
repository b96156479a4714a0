"""Django's test machinery works unchanged on the engine."""

from __future__ import annotations

import pytest
from django.db import connections, transaction
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext

from tests.support.pgstat import backend_pid
from tests.testapp.models import Item


class AtomicTestCase(TestCase):
    databases = {"default", "djpool"}

    @classmethod
    def setUpTestData(cls) -> None:
        Item.objects.create(name="fixture")

    def test_test_data_visible_and_connection_held(self) -> None:
        # TestCase wraps the test in atomic(): one connection throughout.
        pid = backend_pid("default")
        self.assertEqual(Item.objects.count(), 1)
        self.assertEqual(backend_pid("default"), pid)
        self.assertIsNotNone(connections["default"].connection)

    def test_assert_num_queries(self) -> None:
        with self.assertNumQueries(2):
            Item.objects.create(name="a")
            Item.objects.count()

    def test_on_commit_captured(self) -> None:
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            transaction.on_commit(lambda: None)
        self.assertEqual(len(callbacks), 1)

    def test_djpool_alias_in_its_own_transaction(self) -> None:
        Item.objects.using("djpool").create(name="dj")
        self.assertTrue(Item.objects.using("djpool").filter(name="dj").exists())


class ReleasingTransactionTestCase(TransactionTestCase):
    databases = {"default", "djpool"}

    def test_release_path_is_active(self) -> None:
        Item.objects.create(name="t")
        self.assertIsNone(connections["default"].connection)
        with self.assertNumQueries(1):
            Item.objects.count()
        self.assertIsNone(connections["default"].connection)

    def test_flushed_between_tests(self) -> None:
        self.assertEqual(Item.objects.count(), 0)


@pytest.mark.django_db(databases=["default"])
def test_pytest_django_db_fixture_wraps_in_one_connection() -> None:
    pid = backend_pid("default")
    Item.objects.create(name="x")
    assert backend_pid("default") == pid
    assert connections["default"].in_atomic_block


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_capture_queries_context_counts_released_queries() -> None:
    with CaptureQueriesContext(connections["default"]) as ctx:
        Item.objects.create(name="y")
        list(Item.objects.all())
    assert len(ctx.captured_queries) == 2
    assert connections["default"].connection is None


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_aliases_are_independent() -> None:
    with transaction.atomic(using="default"):
        pid_default = backend_pid("default")
        assert connections["other"].connection is None
        pid_other = backend_pid("other")
        assert pid_other != pid_default
        assert connections["other"].connection is None
        assert connections["default"].connection is not None
    assert connections["default"].connection is None
