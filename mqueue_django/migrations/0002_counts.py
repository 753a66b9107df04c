"""The throughput counts' table (``<task table>_counts``, which the dashboard's picture reads), for
projects migrated before it existed: mqueue's schema again, whose statements are all IF NOT EXISTS,
so only what is missing is made. Migrating back drops that table alone."""
import importlib

from django.db import migrations

initial = importlib.import_module('mqueue_django.migrations.0001_initial')   # (its name is no identifier)


def drop_counts(apps, schema_editor):
    for statement in initial.statements(schema_editor, lambda registry, dialect: [
            f'DROP TABLE IF EXISTS {registry.counts_table}']):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [('mqueue', '0001_initial')]
    operations = [migrations.RunPython(initial.create_tables, drop_counts, elidable=False)]
