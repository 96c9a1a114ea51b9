"""The seed data every app starts with: the owners, and items that cycle through the named ones."""

from django.db import migrations

from wsgilab.container import database


def seed(apps, schema_editor):
    Owner = apps.get_model("endpoints", "Owner")
    Item = apps.get_model("endpoints", "Item")
    owners = {name: Owner.objects.get_or_create(name=name)[0] for name in database.SEED_OWNERS}
    if not Item.objects.exists():
        named = [owners[name] for name in database.SEED_OWNERS[:-1]]  # not "you": posted items are theirs
        Item.objects.bulk_create(Item(name=f"item {n}", owner=named[n % len(named)])
                                 for n in range(1, database.SEED_ITEMS + 1))


class Migration(migrations.Migration):

    dependencies = [("endpoints", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
