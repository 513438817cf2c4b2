"""The test settings of a shop that keeps local naive time: ``USE_TZ = False`` (the default of
Django before 5.0) with a local ``TIME_ZONE``, as older shops (django-oscar ones upgraded from old
versions) often run. Every DateTimeField then holds naive local time, which jumps back an hour at
the autumn daylight-saving change. Run the tests that touch time under it::

    DJANGO_SETTINGS_MODULE=tests.settings_naive_tz python -m pytest tests/test_naive_time.py ...
"""

from tests.settings import *  # noqa: F401,F403

USE_TZ = False
TIME_ZONE = "Europe/Stockholm"
