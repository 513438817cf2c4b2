"""Which shop's data the database connection reads now, on a multi-tenant platform.

django-tenants (and django-tenant-schemas before it) keep each shop in a PostgreSQL schema of its
own and set ``connection.schema_name`` to the current one, per request, task or command. The same
content type id and primary keys then name different products in different schemas, so whatever
this process keeps between searches (the vectors' matrices, the serving version, calibrations) is
kept per schema, and so are this app's keys in Django's cache (a queued whitening fit, thumbnails,
the search throttle's counts). A shop of one has no ``schema_name``: None, and its keys are what
they were.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator

from django.conf import settings as django_settings
from django.db import connection
from django.utils.module_loading import import_string


def current_tenant() -> str | None:
    """The schema the default connection reads now (django-tenants), None without one."""
    return getattr(connection, "schema_name", None)


def per_tenant(key: tuple) -> tuple:
    """``key`` for what this process keeps between calls: the same for a shop of one, under the
    current schema's name on a multi-tenant platform."""
    tenant = current_tenant()
    return key if tenant is None else (tenant, *key)


def tenant_key(key: str) -> str:
    """``key`` in Django's cache: the same for a shop of one, the current schema's own on a
    multi-tenant platform, whether or not ``CACHES`` has django-tenants' ``KEY_FUNCTION``."""
    tenant = current_tenant()
    return key if tenant is None else f"{tenant}:{key}"


def in_current_schema(target: Callable) -> Callable:
    """``target``, to run in the schema the connection reads now when another thread calls it (a
    thread of its own, a pool's): a thread's connection starts in django-tenants' public schema,
    where no shop's images, versions or catalogue are, and django-tenants' storage looks for a
    shop's files by that schema. That thread's connection is left in the schema (it changes only
    once per thread: each change empties Django's content type cache); called in this thread,
    ``target`` runs as it is. ``target`` itself for a shop of one."""
    tenant = current_tenant()
    if tenant is None:
        return target
    here = threading.get_ident()

    @functools.wraps(target)
    def in_schema(*args, **kwargs):
        if threading.get_ident() != here and connection.schema_name != tenant:
            connection.set_schema(tenant)
        return target(*args, **kwargs)

    return in_schema


def shop_schemas() -> Iterator[str | None]:
    """Each shop's schema in turn, the connection set to it meanwhile (django-tenants' tenants but
    the public one): what a Celery worker does on its own (its start-up sweep) is done for each
    shop, the task carrying the schema it was sent from (tenant-schemas-celery). None, once, for a
    shop of one."""
    if current_tenant() is None:
        yield None
        return
    # Through import_string: django-tenants is the platform's, never this app's, dependency.
    schema_context = import_string("django_tenants.utils.schema_context")
    public = import_string("django_tenants.utils.get_public_schema_name")()
    tenants = import_string("django_tenants.utils.get_tenant_model")().objects.exclude(schema_name=public)
    for schema in list(tenants.values_list("schema_name", flat=True)):
        with schema_context(schema):
            yield schema


def in_public_schema() -> bool:
    """Whether the connection is in django-tenants' public schema while visual_search is a tenant app
    only (not in ``SHARED_APPS``): no shop's images, nor this app's tables, are there."""
    tenant = current_tenant()
    if tenant is None or tenant != import_string("django_tenants.utils.get_public_schema_name")():
        return False
    return not any(app == "visual_search" or app.startswith("visual_search.apps.") for app in getattr(django_settings, "SHARED_APPS", ()))


__all__ = ["current_tenant", "in_current_schema", "in_public_schema", "per_tenant", "shop_schemas", "tenant_key"]
