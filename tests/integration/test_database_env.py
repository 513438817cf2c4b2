"""The workers and servers the integration tests start open the tests' own database (not marked
``integration``: no service needed)."""

from types import SimpleNamespace

from tests import mysql
from tests.integration.conftest import database_env


def test_on_mysql_the_workers_open_the_test_database_the_tests_created(monkeypatch):
    """They were handed VISUAL_SEARCH_TEST_DB, which the MySQL settings ignore: a worker opened the
    database the URI names (``vs``), not ``test_vs``, and never saw a row the tests wrote."""
    monkeypatch.setenv("VISUAL_SEARCH_TEST_MYSQL", "mysql://vs:pw@db.example:3306/vs?isolation_level=repeatable+read")
    env = database_env(SimpleNamespace(settings_dict={"NAME": "test_vs"}))
    assert set(env) == {"VISUAL_SEARCH_TEST_MYSQL"}
    worker = mysql.database_settings(env["VISUAL_SEARCH_TEST_MYSQL"])
    tests = mysql.database_settings("mysql://vs:pw@db.example:3306/vs?isolation_level=repeatable+read")
    assert worker["NAME"] == "test_vs" == tests["TEST"]["NAME"]
    assert {k: worker[k] for k in ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS")} == {k: tests[k] for k in ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS")}


def test_on_sqlite_the_workers_open_the_tests_file(monkeypatch):
    monkeypatch.delenv("VISUAL_SEARCH_TEST_MYSQL", raising=False)
    assert database_env(SimpleNamespace(settings_dict={"NAME": "/tmp/db.sqlite3"})) == {"VISUAL_SEARCH_TEST_DB": "/tmp/db.sqlite3"}
