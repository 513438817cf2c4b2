"""Management commands of django-visual-search (see commands/)."""

from __future__ import annotations

import difflib
import functools

from django.apps import apps
from django.core.management.base import CommandError
from django.db import DatabaseError

from ..logs import counted  # noqa: F401 - the commands' plural helper, here since they had it first
from ..models import unapplied_migrations
from ..registry import registrations_for_model, registrations_for_result


def model_from_label(label: str):
    """The model class named ``app_label.ModelName``, or a CommandError that says how to name it."""
    try:
        return apps.get_model(label)
    except (LookupError, ValueError) as exc:
        labels = {m._meta.label.lower(): m._meta.label for m in apps.get_models()}
        # A wrong app label ("shop.Product" in a shop whose app is "store") is matched by its model name.
        by_name = [m._meta.label for m in apps.get_models() if m.__name__.lower() == label.rpartition(".")[2].lower()]
        close = difflib.get_close_matches(label.lower(), list(labels), n=1)
        guess = by_name[0] if len(by_name) == 1 else labels[close[0]] if close else None
        hint = f"did you mean {guess!r}?" if guess else "use app_label.ModelName."
        raise CommandError(f"No model {label!r}; {hint}") from exc


def searchable_model(command, label: str, doing: str):
    """The searchable model ``label`` names: a result model, or the one an image model's matches
    stand for (a gallery's product: its rows are filed under that one; ``doing`` says what is done
    then, e.g. "rebuilding {model}'s vectors"). A model that no registration returns is a CommandError, not an
    empty answer: a nightly ``visual_search_duplicates --model shop.ProductImage`` said "no possible
    duplicate images" and exited 0 whatever the catalogue held."""
    model = model_from_label(label)
    if registrations_for_result(model):
        return model
    # An image model (a gallery) whose matches stand for another: its vectors are indexed as that one's.
    results = {r.result_model for r in registrations_for_model(model)}
    if len(results) == 1:
        (result,) = results
        command.stdout.write(f"{label}'s images are searched as {result._meta.label}: {doing.format(model=result._meta.label)}.")
        return result
    raise CommandError(f"{label} is not searchable: no registration in VISUAL_SEARCH['MODELS'] returns it.")


def explain_unmigrated(handle):
    """A command's ``handle`` that stops before doing anything while visual search's migrations are
    not all applied (the step after ``pip install -U``), saying what to do. Checked first: on 0.1's
    tables some commands met no missing column and went on, ``visual_search_rebuild_index``
    "rebuilding" from 0 vectors with exit status 0; and a database error from a table or column not
    made yet still says it, where the database's own words ("no such column:
    visual_search_imageembedding.duplicate_of_id") did not."""

    @functools.wraps(handle)
    def checked(self, *args, **options):
        waiting = unapplied_migrations()
        if waiting:
            raise _unmigrated(waiting)
        try:
            return handle(self, *args, **options)
        except DatabaseError as exc:
            waiting = unapplied_migrations()
            if not waiting:
                raise
            raise _unmigrated(waiting) from exc

    return checked


def _unmigrated(waiting: list[str]) -> CommandError:
    return CommandError(
        f"The database lacks visual search's migration{'s' if len(waiting) > 1 else ''} {', '.join(waiting)}: "
        "run `python manage.py migrate` (after an upgrade, see docs/upgrading.md), then this command again."
    )


