from django.db import migrations


def add_first_books(apps, schema_editor):
    # Rows with a foreign key: inserting them queues the key's deferred check.
    Shelf = apps.get_model("resetdb_shelf", "Shelf")
    Book = apps.get_model("resetdb_shelf", "Book")
    shelf = Shelf.objects.create(name="Classics")
    Book.objects.create(shelf=shelf, title="Odyssey")
    Book.objects.create(shelf=shelf, title="Aeneid")


class Migration(migrations.Migration):

    dependencies = [("resetdb_shelf", "0001_initial")]

    operations = [migrations.RunPython(add_first_books, migrations.RunPython.noop)]
