from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("visual_search", "0006_pgvector")]

    operations = [
        migrations.AddField(
            model_name="whitening",
            name="calibration",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
