"""The workers' log lines, read by a shop's operators: each noun agrees with its count ("learned
again for 1 model", "Sweep queued 2 images"), with one item and with several, never "image(s)"."""

import logging

import pytest

from visual_search import duplicates, indexing, queue, tasks
from visual_search.contrib.whatsapp.payload import incoming_messages

pytestmark = pytest.mark.django_db

ONE_AND_TWO = pytest.mark.parametrize("count", [1, 2])


def logged(caplog) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def noun(count: int, singular: str) -> str:
    return f"{count} {singular if count == 1 else singular + 's'}"


@ONE_AND_TWO
def test_the_fit_counts_the_models_it_learned(monkeypatch, caplog, count):
    monkeypatch.setattr(tasks, "fit_if_needed", lambda: [object()] * count)
    with caplog.at_level(logging.INFO, logger="visual_search"):
        assert tasks.fit_whitening.run() == count
    assert f"learned again for {noun(count, 'model')}" in logged(caplog)


@ONE_AND_TWO
def test_the_sweep_counts_the_images_it_queued(monkeypatch, caplog, count):
    for name in ("resume_stalled_builds", "repair_index", "fit_if_needed"):
        monkeypatch.setattr(tasks, name, lambda *args: None)
    monkeypatch.setattr(tasks, "select_pks", lambda registration, states: [])
    queued = iter([count])
    monkeypatch.setattr(tasks, "enqueue", lambda label, field, pks: next(queued, 0))
    with caplog.at_level(logging.INFO, logger="visual_search"):
        assert tasks.sweep() == count
    assert f"Sweep queued {noun(count, 'image')}" in logged(caplog)


@ONE_AND_TWO
def test_a_failed_duplicate_check_counts_its_images(monkeypatch, caplog, count):
    monkeypatch.setattr(duplicates, "detect", lambda rows: 1 / 0)
    duplicates.detect_quietly([object()] * count)
    assert f"Duplicate image check failed for {noun(count, 'image')};" in logged(caplog)


@ONE_AND_TWO
def test_a_backend_that_cannot_drop_vectors_counts_them(monkeypatch, caplog, count):
    monkeypatch.setattr(indexing, "get_backend", lambda: None)  # .remove: AttributeError
    indexing.remove_from_backend(list(range(count)))
    assert f"could not drop {noun(count, 'vector')} of images" in logged(caplog)


@ONE_AND_TWO
def test_unsent_work_counts_its_ids(monkeypatch, caplog, count):
    def refused(*args, **kwargs):
        raise OSError("Connection refused")

    monkeypatch.setattr(queue, "send", refused)
    tasks._send("testapp.product", "image", list(range(count)), False, None)
    monkeypatch.setattr(tasks, "_weights_error_logged", {})
    tasks._log_weights_error("testapp.product", count, OSError("no weights"))
    monkeypatch.setattr(queue, "mark_queued", refused)
    queue._mark_queued("testapp.product", "image", list(range(count)))
    text = logged(caplog)
    assert f"Could not queue visual search work for testapp.product ({noun(count, 'id')})" in text
    assert f"could not index testapp.product {noun(count, 'id')}:" in text
    assert f"Could not mark {noun(count, 'image')} of testapp.product pending" in text


@ONE_AND_TWO
def test_whatsapp_counts_the_messages_to_another_number(caplog, count):
    value = {"metadata": {"phone_number_id": "222"}, "messages": [{"from": "4915100000000", "type": "text"}] * count}
    body = {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": value}]}]}
    with caplog.at_level(logging.INFO, logger="visual_search"):
        assert incoming_messages(body, "111") == []
    assert f"WhatsApp: {noun(count, 'message')} to phone number id 222" in logged(caplog)
