"""The test settings without REST_FRAMEWORK: a project that never named drf-spectacular's schema
class (the installation docs do not ask it to). tests/test_api_docs.py serves the API's schema with them."""

from tests.settings import *  # noqa: F403

del REST_FRAMEWORK  # noqa: F821
