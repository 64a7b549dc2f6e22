from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("resetdb_shelf", "0002_first_books")]

    # ALTER TABLE on the table 0002 wrote to: PostgreSQL refuses it while that
    # transaction still has the rows' foreign key checks pending.
    operations = [
        migrations.AddField(
            model_name="book",
            name="edition",
            field=models.PositiveIntegerField(default=1),
        ),
    ]
