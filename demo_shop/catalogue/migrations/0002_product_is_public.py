from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalogue", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="product",
            name="is_public",
            field=models.BooleanField(default=True, help_text="Shown to customers."),
        ),
    ]
