"""Integrations with shop frameworks, each an app of its own: ``visual_search.contrib.oscar`` (django-oscar).

They sit above the rest of the package (the layers in pyproject.toml): they use its public functions
and templates, and nothing in ``visual_search`` imports them.
"""
