"""One ImageEmbedding row per image *and fingerprint*, so several model versions' vectors coexist."""

from django.db import migrations, models


def pending_rows_carry_their_fingerprint(apps, schema_editor):
    """Rows left pending or failed by the one-row-per-image code were for the settings' model.

    They kept whatever fingerprint the row had before (or none), which now would say "pending for
    that version"; they are for the model the settings describe, as the code that wrote them meant.
    """
    from visual_search.embeddings.spec import settings_fingerprint

    ImageEmbedding = apps.get_model("visual_search", "ImageEmbedding")
    rows = ImageEmbedding.objects.exclude(status="ready")
    if rows.exists():
        rows.update(fingerprint=settings_fingerprint())


class Migration(migrations.Migration):

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("visual_search", "0004_model_version"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="imageembedding", name="visual_search_one_per_image"),
        migrations.RunPython(pending_rows_carry_their_fingerprint, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="imageembedding",
            constraint=models.UniqueConstraint(
                fields=("content_type", "object_id", "field_name", "fingerprint"), name="visual_search_one_per_image_version"
            ),
        ),
    ]
