"""Helpers of tests/test_telegram.py: a local fake Bot API server, URLs, a result adapter with prices."""
