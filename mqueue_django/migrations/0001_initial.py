"""mqueue's tables, as ``mqueue schema`` gives them for the database (so a Django project and the
``mqueue`` command see the same tables), for each TASKS backend of mqueue's whose DATABASE this
migration runs on. Not atomic: SQLite's schema turns on WAL, which it refuses inside a transaction
(each statement is IF NOT EXISTS, so a migration cut short runs again). The tables are those of
the TASKS settings when it runs: for a backend or TABLE added later, `manage.py mqueue init-db`."""
from django.db import migrations

DIALECTS = {'mysql': 'mysql', 'postgresql': 'postgresql', 'sqlite': 'sqlite'}


def statements(schema_editor, sql_of):
    from mqueue_django.backend import mqueue_backends
    connection = schema_editor.connection
    for backend in mqueue_backends():
        if backend.database == connection.alias:
            if connection.vendor not in DIALECTS:
                raise RuntimeError(f'mqueue runs on MySQL/MariaDB, PostgreSQL and SQLite, not {connection.vendor} '
                                   f'(TASKS[{backend.alias!r}] has DATABASE {connection.alias!r})')
            yield from sql_of(backend.registry, DIALECTS[connection.vendor])


def create_tables(apps, schema_editor):
    for statement in statements(schema_editor, lambda registry, dialect: registry.schema(dialect).split(';\n')):
        if statement.strip():
            schema_editor.execute(statement, params=None)


def drop_tables(apps, schema_editor):
    def tables(registry, dialect):
        return [f'DROP TABLE IF EXISTS {table}'
                for table in (registry.result_table, registry.cron_table, registry.table)]
    for statement in statements(schema_editor, tables):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    atomic = False
    initial = True
    dependencies = []
    operations = [migrations.RunPython(create_tables, drop_tables, elidable=False)]
