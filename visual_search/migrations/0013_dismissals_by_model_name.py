"""Dismissed duplicate warnings name each image's model by name (``"shop.product:12:image"``), not
by content type id (``"7:12:image"``): a database that numbers its content types its own way
(``dumpdata`` / ``loaddata`` into another one) kept the ids, so the warnings came back there, and an
id that is another model's there could have hidden that model's warnings.

The keys are rewritten both ways. A key whose content type is gone (its model removed) is left as it
is: it names no image either way. Each pair is sorted again, as ``DuplicateDismissal.pair`` sorts it.
"""

from django.db import migrations, models

BATCH = 500


def _rewrite(apps, schema_editor, *, by_name: bool) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    DuplicateDismissal = apps.get_model("visual_search", "DuplicateDismissal")
    db = schema_editor.connection.alias
    names = {str(pk): f"{app_label}.{model}" for pk, app_label, model in ContentType.objects.using(db).values_list("pk", "app_label", "model")}
    # The part before the first colon: an id (a digit first) or "app_label.model" (a letter first),
    # so an old key never reads as a new one and the rows stay unique all along.
    prefixes = names if by_name else {name: pk for pk, name in names.items()}
    changed = []
    for dismissal in DuplicateDismissal.objects.using(db).order_by("pk").iterator():
        first, second = sorted(_convert(key, prefixes) for key in (dismissal.first, dismissal.second))
        if (first, second) != (dismissal.first, dismissal.second):
            dismissal.first, dismissal.second = first, second
            changed.append(dismissal)
    DuplicateDismissal.objects.using(db).bulk_update(changed, ["first", "second"], batch_size=BATCH)


def _convert(key: str, prefixes: dict[str, str]) -> str:
    """``"7:12:image"`` <-> ``"shop.product:12:image"``; as it is where its model is gone."""
    prefix, rest = key.split(":", 1)
    return f"{prefixes[prefix]}:{rest}" if prefix in prefixes else key


def forwards(apps, schema_editor):
    _rewrite(apps, schema_editor, by_name=True)


def backwards(apps, schema_editor):
    _rewrite(apps, schema_editor, by_name=False)


class Migration(migrations.Migration):

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("visual_search", "0012_embed_attempts"),
    ]

    operations = [
        # An app label and model name are longer than an id: room for them (two 255-character
        # columns stay within MySQL's 3,072-byte index on utf8mb4).
        migrations.AlterField(model_name="duplicatedismissal", name="first", field=models.CharField(max_length=255)),
        migrations.AlterField(model_name="duplicatedismissal", name="second", field=models.CharField(max_length=255)),
        migrations.RunPython(forwards, backwards),
    ]
