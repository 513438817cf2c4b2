"""django-oscar: add ``"visual_search.contrib.oscar"`` to INSTALLED_APPS, after Oscar's apps and
``visual_search``, and Oscar's product images are searchable. See docs/oscar.md.

- :mod:`.registration`: ``catalogue.ProductImage.original`` registered for you; a variant's image
  counts for its parent product;
- :mod:`.visibility`: ``browsable`` and ``public``, for ``VISUAL_SEARCH["VISIBILITY"]``;
- :mod:`.results`: ``OscarResultAdapter``, prices and availability from Oscar's strategy;
- :mod:`.views` and the ``visual_search/oscar/`` templates: the search page in Oscar's layout, the
  navbar button, and the dashboard page (status, reindex, requeue);
- :mod:`.admin`: the status column on Oscar's ``ProductAdmin`` in Django's admin.
"""
