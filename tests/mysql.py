"""A MySQL or MariaDB server's URI as a Django ``DATABASES`` entry: ``VISUAL_SEARCH_TEST_MYSQL`` runs
the suite on it (docs/installation.md, "MySQL and MariaDB")."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlparse


def database_settings(uri: str) -> dict:
    """``mysql://user:password@host:port/name`` as Django's ``DATABASES`` entry (utf8mb4, and the
    test database created with it). ``?unix_socket=/run/mysqld/mysqld.sock`` connects by socket,
    ``?isolation_level=repeatable+read`` replaces Django's default, read committed."""
    parsed = urlparse(uri)
    name = parsed.path.lstrip("/") or "visual_search"
    options = {"charset": "utf8mb4"}
    query = parse_qs(parsed.query)
    for option in ("unix_socket", "isolation_level"):
        if query.get(option):
            options[option] = query[option][0]
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": name,
        "USER": unquote(parsed.username or "root"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        "TEST": {"NAME": f"test_{name}", "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
    }


def on_database(uri: str, name: str) -> str:
    """``uri`` with its database replaced by ``name``: what the integration tests' workers and servers
    open, the test database (``test_name``) the test process created, not the one it is named after."""
    return urlparse(uri)._replace(path=f"/{name}").geturl()
