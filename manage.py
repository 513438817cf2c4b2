#!/usr/bin/env python
"""The demo shop's manage.py: ``python manage.py runserver`` (see demo_shop/run.sh)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_shop.settings")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
