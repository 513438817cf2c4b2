"""What every test settings module shares (tests/settings.py, tests/oscar/settings.py,
tests/tenants/settings.py): the plumbing tests' network and scores, and the package's log lines on
the console."""

# A seeded, randomly initialised VGG16 at 64 px (fast, no download). Query expansion, calibrated
# scores and the whitening's augmented views are off so that "an identical image scores 1.0" stays a
# sharp assertion; one view and the best image alone keep the plumbing tests' vectors and scores as
# they were. tests/test_search.py tests query expansion on its own, tests/test_scores.py the
# calibrated scores and the small shop's whitening from customer views, test_extractor and
# test_ranking the views and prototypes.
PLUMBING_NETWORK = {
    "WEIGHTS": "random",
    "RANDOM_SEED": 1,
    "IMAGE_SIZE": 64,
    "BATCH_SIZE": 8,
    "QUERY_EXPANSION": 0,
    "SCORE": "similarity",
    "WHITENING_AUGMENT": 0,
    "VIEWS": ["full"],
    "PROTOTYPE_WEIGHT": 0.0,
}


def console_logging(level: str) -> dict:
    """``LOGGING`` that prints the package's log lines at ``level`` and above."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "loggers": {"visual_search": {"handlers": ["console"], "level": level}},
    }
