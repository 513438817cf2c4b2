"""The platform's shops (django-tenants): one PostgreSQL schema each, chosen per request by domain."""

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Shop(TenantMixin):
    name = models.CharField(max_length=100)
    auto_create_schema = True


class Domain(DomainMixin):
    pass
