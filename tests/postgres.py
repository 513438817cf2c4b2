"""A PostgreSQL server's URI as a Django ``DATABASES`` entry, for the pgvector tests and benchmarks."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse


def database_settings(uri: str) -> dict[str, str]:
    """``postgresql://user:password@host:port/name`` as Django's ``DATABASES`` entry. pgserver
    listens on a Unix socket only: its folder comes as ``?host=``, which wins over the host part."""
    parsed = urlparse(uri)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.path.lstrip("/") or "postgres",
        "USER": parsed.username or "postgres",
        "PASSWORD": parsed.password or "",
        "HOST": parse_qs(parsed.query).get("host", [parsed.hostname or ""])[0],
        "PORT": str(parsed.port or ""),
    }
