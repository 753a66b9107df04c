"""mqueue_django in a real Django project, examples/django_project/, on MariaDB, PostgreSQL and
SQLite: each test makes a database of its own, runs `manage.py migrate` on it, and drives the
project as its users do: its view through Django's test client, `manage.py shell`,
`manage.py mqueue_worker`. ./test runs this file twice: with the django-tasks backport on this
Python, and with Django 6's django.tasks under Python 3.12."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

import mqueue

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT / 'examples' / 'django_project'
SERVERS = {'mariadb': 'mysql://root@127.0.0.1:3306/', 'postgresql': 'postgresql://root@127.0.0.1:5432/'}

# The tests' own settings and tasks, beside the example's (which stay as docs/django.md shows them).
TEST_SETTINGS = '''\
import os

from project.settings import *   # the example's

TASKS['default']['OPTIONS']['MODULES'] = ['testing_tasks']
# The cron every second where a test asks for it (TEST_CRON), else none: its tasks would mix with a
# test's own.
TASKS['default']['OPTIONS']['CRONS'] = {'shop.tasks.count_orders': '* * * * * */1'} if os.environ.get('TEST_CRON') else {}
TASKS['other'] = {'BACKEND': 'mqueue_django.backend.MQueueBackend', 'QUEUES': [],
                  'OPTIONS': {'TABLE': 'other_task', 'CRON_TABLE': 'other_cron', 'RETRIES': 0}}
'''
TEST_TASKS = '''\
import time
from pathlib import Path

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from shop.models import Order, Receipt


@task(takes_context=True, queue_name='mail')
def slow_receipt(context, order_id, started, seconds):
    """Writes a receipt, says so in the file `started`, then takes `seconds` on its first attempt."""
    Receipt.objects.create(order=Order.objects.get(id=order_id), text=f'attempt {context.attempt}')
    Path(started).write_text(str(context.attempt))
    if context.attempt == 1:
        time.sleep(seconds)
    return context.attempt


@task(queue_name='mail')
def swallow(order_id):
    """Catches a database error without leaving the transaction's atomic() block."""
    from django.db import IntegrityError
    order = Order.objects.get(id=order_id)
    Receipt.objects.create(order=order, text='first')
    try:
        Receipt.objects.create(order=order, text='second')   # one receipt per order
    except IntegrityError:
        pass
    return 'ok'


@task(queue_name='mail')
def with_callbacks(order_id, path):
    """Leaves two on_commit() callbacks: one that raises, one that writes a file."""
    from django.db import transaction
    import functools, operator
    Receipt.objects.create(order=Order.objects.get(id=order_id), text='with callbacks')
    transaction.on_commit(functools.partial(operator.truediv, 1, 0))   # (no __qualname__: Django 5.2 trips on it)
    transaction.on_commit(lambda: Path(path).write_text(str(order_id)))


@task()
async def whoami():
    """An async task that reads mqueue.current(), as a task run by the worker can."""
    import mqueue
    return [mqueue.current().id, mqueue.current().name]
'''


def example_file(path):
    """A file of the example project that docs/django.md shows (the test of the docs checks that
    it shows it as it is)."""
    found = ROOT / path
    assert found.is_file(), path
    return found


class Project:
    """The example project on a database of its own."""

    def __init__(self, database, url, tmp_path):
        self.database, self.url, self.tmp = database, url, tmp_path
        (tmp_path / 'testing_settings.py').write_text(TEST_SETTINGS)
        (tmp_path / 'testing_tasks.py').write_text(TEST_TASKS)
        path = [str(ROOT), str(PROJECT), str(tmp_path)]
        if database == 'postgresql-psycopg2':   # Django takes psycopg 3 where it can import it: hide it
            (tmp_path / 'hidden' / 'psycopg').mkdir(parents=True)
            (tmp_path / 'hidden' / 'psycopg' / '__init__.py').write_text('raise ImportError("hidden: use psycopg2")\n')
            path.insert(0, str(tmp_path / 'hidden'))
        self.env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE='testing_settings', TASK_BACKOFF='0',
                        PYTHONPATH=os.pathsep.join(path))

    def manage(self, *args, check=True, **env):
        done = subprocess.run([sys.executable, str(PROJECT / 'manage.py'), *args], cwd=self.tmp, capture_output=True,
                              text=True, timeout=120, env={**self.env, **env})
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def shell(self, code, **env):
        """Run code in `manage.py shell`; what its last line printed, read as JSON."""
        done = self.manage('shell', '-v0', '-c', textwrap.dedent(code), **env)
        return json.loads(done.stdout.strip().splitlines()[-1])

    def worker(self, *args, **env):
        return subprocess.Popen([sys.executable, str(PROJECT / 'manage.py'), 'mqueue_worker', *args], cwd=self.tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**self.env, **env})

    def sql(self, statement):
        return self.shell(f'''
            from django.db import connection
            with connection.cursor() as cursor:
                cursor.execute({statement!r})
                rows = cursor.fetchall() if cursor.description else []
                print(__import__('json').dumps([list(row) for row in rows], default=str))
        ''')


def test_this_python_gets_djangos_own_tasks_framework_from_3_12_and_the_backport_before():
    import django
    if sys.version_info >= (3, 12):
        import django.tasks  # noqa: F401
        assert django.VERSION >= (6, 0)
    else:
        import django_tasks  # noqa: F401
        assert django.VERSION[:2] == (5, 2)


DRIVERS = {'sqlite': 'sqlite3', 'mariadb': 'MySQLdb', 'postgresql': 'psycopg', 'postgresql-psycopg2': 'psycopg2'}


@pytest.fixture(params=list(DRIVERS))
def project(request, tmp_path):
    """The example project as docs/django.md shows it: these files are what the tests run."""
    example_file('examples/django_project/project/settings.py')
    example_file('examples/django_project/shop/tasks.py')
    example_file('examples/django_project/shop/views.py')
    database = request.param
    if database == 'mariadb' and os.environ.get('CI') != 'true':
        pytest.importorskip('MySQLdb', reason="Django's MySQL backend needs mysqlclient (./test says why it is missing)")
    with database_of_its_own(database.split('-')[0], tmp_path) as url:
        project = Project(database, url, tmp_path)
        project.manage('migrate', '-v0')
        yield project


@contextlib.contextmanager
def database_of_its_own(database, tmp_path):
    if database == 'sqlite':
        yield f'sqlite:///{tmp_path}/project.db'
        return
    name = f't_dj_{uuid.uuid4().hex[:10]}'
    try:
        admin = mqueue.connect_url(SERVERS[database] + 'test')()
    except Exception as exc:   # (as test_mqueue.py's backends: skipped, but under CI=true failed)
        if os.environ.get('CI') == 'true':
            raise
        pytest.skip(f'{database} unreachable: {exc}')
    mqueue._set_autocommit(admin, True)
    try:
        admin.cursor().execute(f'CREATE DATABASE {name}')
        yield SERVERS[database] + name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS {name}' + (' WITH (FORCE)' if database == 'postgresql' else ''))
        admin.close()


class running:
    """A worker process whose output is read as it comes (output()), killed if the block fails."""

    def __init__(self, process):
        self.process, self.lines = process, []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(process.stdout.readline, '')),
                                       daemon=True)
        self.reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *error):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(60)
        self.reader.join(60)

    def send_signal(self, signum):
        self.process.send_signal(signum)

    def wait(self, timeout):
        status = self.process.wait(timeout)
        self.reader.join(timeout)
        return status

    def output(self):
        return ''.join(self.lines)


def wait_for(condition, timeout=30.0, what='the condition'):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


def test_the_views_order_and_its_task_commit_together_and_the_tasks_write_commits_with_it(project):
    placed = project.shell('''
        import json
        from django.test import Client
        print(json.dumps(Client().post('/orders', {'email': 'ann@example.com', 'total': 5}).json()))
    ''')
    assert project.sql('SELECT name, queue, args FROM mqueue_task') == [
        ['shop.tasks.send_receipt', 'mail', json.dumps({'args': [placed['order']], 'kwargs': {}}, separators=(',', ':'))]]
    project.manage('mqueue_worker', '--burst')
    assert project.sql('SELECT order_id, text FROM shop_receipt') == [[placed['order'], '5 EUR, thank you']]
    assert project.sql('SELECT COUNT(*) FROM mqueue_task') == [[0]]
    assert project.shell(f'''
        import json
        from shop.tasks import send_receipt
        result = send_receipt.get_result({placed['task']!r})
        print(json.dumps([result.status, result.return_value, result.args, result.attempts, result.is_finished]))
    ''') == ['SUCCESSFUL', 1, [placed['order']], 1, True]


def test_django_talks_to_the_database_through_the_driver_asked_for(project):
    assert project.shell('''
        import json
        from django.db import connection
        connection.ensure_connection()
        print(json.dumps(type(connection.connection).__module__.split('.')[0]))
    ''') == DRIVERS[project.database]


def test_a_rolled_back_atomic_block_takes_its_enqueued_task_with_it(project):
    assert project.shell('''
        from django.db import transaction
        from shop.models import Order
        from shop.tasks import send_receipt
        try:
            with transaction.atomic():
                order = Order.objects.create(email='bob@example.com', total=3)
                send_receipt.enqueue(order.id)
                raise RuntimeError('the payment failed')
        except RuntimeError:
            pass
        print(Order.objects.count())
    ''') == 0
    assert project.sql('SELECT COUNT(*) FROM mqueue_task') == [[0]]


def test_a_failing_tasks_write_rolls_back_its_retry_is_recorded_and_get_result_says_failed(project):
    order = project.shell('''
        from shop.models import Order
        from shop.tasks import send_receipt
        order = Order.objects.create(email='eve@example.invalid', total=9)
        send_receipt.enqueue(order.id)
        print(order.id)
    ''')
    project.manage('mqueue_worker', '--burst', TASK_RETRIES='1', TASK_BACKOFF='3600')   # one attempt, one retry due later
    assert project.sql('SELECT COUNT(*) FROM shop_receipt') == [[0]]
    ready = project.shell('''
        import json
        from shop.tasks import send_receipt
        result = send_receipt.get_result('1')
        print(json.dumps([result.status, result.attempts, [e.exception_class_path for e in result.errors]]))
    ''')
    assert ready == ['READY', 1, ['builtins.ValueError']]
    project.sql("UPDATE mqueue_task SET eta = '2000-01-01 00:00:00'")   # the retry is due
    project.manage('mqueue_worker', '--burst', TASK_RETRIES='1')
    assert project.sql('SELECT COUNT(*) FROM shop_receipt') == [[0]]
    failed = project.shell('''
        import json
        from shop.tasks import send_receipt
        result = send_receipt.get_result('1')
        try:
            result.return_value
        except ValueError as exc:
            raised = str(exc)
        print(json.dumps([result.status, result.attempts, result.args, raised,
                          [e.exception_class.__name__ for e in result.errors], result.errors[-1].traceback]))
    ''')
    assert failed[:5] == ['FAILED', 2, [order], 'Task failed', ['ValueError', 'ValueError']]
    assert 'ValueError: cannot mail eve@example.invalid' in failed[5] and 'Traceback' in failed[5]


def test_an_async_tasks_orm_writes_commit_with_it_and_roll_back_with_its_failure(project):
    project.shell('''
        from shop.models import Order
        from shop.tasks import audit
        for total in (5, -1):
            audit.enqueue(Order.objects.create(email='x@example.com', total=total).id)
        print(1)
    ''')
    project.manage('mqueue_worker', '--burst', TASK_RETRIES='0')
    assert project.sql('SELECT order_id, note FROM shop_audit') == [[1, 'total 5']]
    assert project.shell('''
        import json
        from shop.tasks import audit
        print(json.dumps([audit.get_result('1').status, audit.get_result('2').status]))
    ''') == ['SUCCESSFUL', 'FAILED']


def test_deferred_and_prioritised_tasks_run_in_order(project):
    """Django's priorities, higher first, over more distinct priorities than the claim's window
    (mqueue.MAX_PRIORITIES), with the highest held by tasks deferred an hour; a task deferred a
    few seconds runs once due."""
    soon = project.shell('''
        import datetime as dt
        from django.utils import timezone
        from shop.models import Order
        from shop.tasks import send_receipt
        for priority in range(100, 60, -1):   # 40 priorities, each holding a task due in an hour
            order = Order.objects.create(email='later@example.com', total=priority)
            send_receipt.using(priority=priority, run_after=timezone.now() + dt.timedelta(hours=1)).enqueue(order.id)
        for priority in (0, 50, -20, -100, 10, 60, 30):
            order = Order.objects.create(email='now@example.com', total=priority)
            send_receipt.using(priority=priority).enqueue(order.id)
        order = Order.objects.create(email='soon@example.com', total=1000)
        soon = timezone.now() + dt.timedelta(seconds=2)
        send_receipt.using(priority=100, run_after=soon).enqueue(order.id)
        print(soon.timestamp())
    ''')
    project.manage('mqueue_worker', '--burst')
    ran = project.sql('SELECT o.total FROM shop_receipt r JOIN shop_order o ON o.id = r.order_id ORDER BY r.id')
    assert [total for total, in ran] == [60, 50, 30, 10, 0, -20, -100]
    wait_for(lambda: time.time() > soon + 0.1, what='the deferred task to be due')
    project.manage('mqueue_worker', '--burst')
    ran = project.sql('SELECT o.total FROM shop_receipt r JOIN shop_order o ON o.id = r.order_id ORDER BY r.id')
    assert [total for total, in ran][7:] == [1000]
    assert project.sql('SELECT COUNT(*) FROM mqueue_task') == [[40]]


def test_a_sigkilled_workers_task_runs_again_once_and_its_first_attempts_write_is_gone(project):
    started = project.tmp / 'started'
    project.shell(f'''
        from shop.models import Order
        from testing_tasks import slow_receipt
        slow_receipt.enqueue(Order.objects.create(email='kim@example.com', total=1).id, {str(started)!r}, 600)
        print(1)
    ''')
    first = project.worker()
    try:
        wait_for(started.exists, what='the task to start')
    finally:
        first.kill()
        first.communicate(timeout=30)
    started.unlink()
    second = project.worker()
    try:
        wait_for(lambda: started.exists() and project.sql('SELECT COUNT(*) FROM mqueue_task') == [[0]],
                 what='the task to be rescued and run again')
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=60)[0]
    assert second.returncode == 0, output
    assert project.sql('SELECT text FROM shop_receipt') == [['attempt 2']]
    assert project.shell('''
        import json
        from testing_tasks import slow_receipt
        result = slow_receipt.get_result('1')
        print(json.dumps([result.status, result.return_value, result.attempts]))
    ''') == ['SUCCESSFUL', 2, 2]


def test_sigterm_lets_the_running_task_finish_and_commit_a_second_abandons_it(project):
    started = project.tmp / 'started'
    project.shell(f'''
        from shop.models import Order
        from testing_tasks import slow_receipt
        slow_receipt.enqueue(Order.objects.create(email='lee@example.com', total=1).id, {str(started)!r}, 2)
        slow_receipt.enqueue(Order.objects.create(email='max@example.com', total=2).id, {str(started)!r}, 600)
        print(1)
    ''')
    with running(project.worker('--batch', '1')) as worker:
        wait_for(started.exists, what='the first task to start')
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output()
    assert project.sql('SELECT o.email FROM shop_receipt r JOIN shop_order o ON o.id = r.order_id') == [
        ['lee@example.com']]
    started.unlink()
    with running(project.worker('--batch', '1')) as worker:
        wait_for(started.exists, what='the second task to start')
        worker.send_signal(signal.SIGTERM)
        wait_for(lambda: 'finishing the running tasks' in worker.output(), what='the first signal to be handled')
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 128 + signal.SIGTERM, worker.output()
    assert project.sql('SELECT COUNT(*) FROM shop_receipt') == [[1]], worker.output()
    assert project.sql('SELECT COUNT(*) FROM mqueue_task WHERE dead_at IS NULL') == [[1]]   # (back in the queue)


def test_the_cron_fires_in_a_running_worker_and_mqueue_crons_lists_it(project):
    worker = project.worker(TEST_CRON='1')
    try:
        wait_for(lambda: project.sql('SELECT COUNT(*) FROM shop_count') != [[0]], what='the cron to fire')
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
    assert worker.returncode == 0, output
    listed = json.loads(project.manage('mqueue', 'crons', '--json', TEST_CRON='1').stdout)
    assert [(row['name'], row['expression']) for row in listed] == [('shop.tasks.count_orders', '* * * * * */1')]


def test_signals_are_sent_as_django_documents_them(project):
    assert project.shell('''
        import json
        from django.core.management import call_command
        from django.tasks.signals import task_enqueued, task_finished, task_started
    '''.replace('from django.tasks.signals', 'from ' + signals_module()) + '''
        from shop.models import Order
        from shop.tasks import send_receipt
        seen = []
        def receiver(signal):
            return lambda sender, task_result, **kwargs: seen.append(
                [signal, task_result.id, task_result.status, sender.__name__])
        for name, signal in (('enqueued', task_enqueued), ('started', task_started), ('finished', task_finished)):
            signal.connect(receiver(name), weak=False)
        send_receipt.enqueue(Order.objects.create(email='ok@example.com', total=1).id)
        send_receipt.enqueue(Order.objects.create(email='no@example.invalid', total=1).id)
        call_command('mqueue_worker', '--burst', '-v0')
        print(json.dumps(seen))
    ''', TASK_RETRIES='0') == [['enqueued', '1', 'READY', 'MQueueBackend'], ['enqueued', '2', 'READY', 'MQueueBackend'],
                              ['started', '1', 'RUNNING', 'MQueueBackend'], ['started', '2', 'RUNNING', 'MQueueBackend'],
                              ['finished', '1', 'SUCCESSFUL', 'MQueueBackend'],
                              ['finished', '2', 'FAILED', 'MQueueBackend']]


def signals_module():
    try:
        import django.tasks  # noqa: F401
        return 'django.tasks.signals'
    except ImportError:
        return 'django_tasks.signals'


def test_bad_calls_are_refused_at_enqueue_and_unknown_results_do_not_exist(project):
    assert project.shell('''
        import json
        from shop.tasks import send_receipt
        refused = []
        for call in (lambda: send_receipt.enqueue(), lambda: send_receipt.enqueue(1, 2),
                     lambda: send_receipt.enqueue(object()), lambda: send_receipt.using(queue_name='other').enqueue(1)):
            try:
                call()
            except Exception as exc:
                refused.append(type(exc).__name__)
        for result_id in ('1', 'x', '-3'):
            try:
                send_receipt.get_result(result_id)
            except Exception as exc:
                refused.append(type(exc).__name__)
        print(json.dumps(refused))
    ''') == ['TypeError', 'TypeError', 'TypeError', 'InvalidTask' if signals_module().startswith('django.')
             else 'InvalidTaskError', 'TaskResultDoesNotExist', 'TaskResultDoesNotExist', 'TaskResultDoesNotExist']
    assert project.sql('SELECT COUNT(*) FROM mqueue_task') == [[0]]


def test_operators_see_and_fix_what_failed_with_manage_py(project):
    project.shell('''
        from shop.models import Order
        from shop.tasks import send_receipt
        send_receipt.enqueue(Order.objects.create(email='zed@example.invalid', total=1).id)
        print(1)
    ''')
    project.manage('mqueue_worker', '--burst', TASK_RETRIES='0')
    status = json.loads(project.manage('mqueue_status', '--json').stdout)
    assert [(row['queue'], row['dead']) for row in status] == [('mail', 1)]
    dead = json.loads(project.manage('mqueue', 'dead', '--json').stdout)
    assert [(row['id'], row['name']) for row in dead] == [(1, 'shop.tasks.send_receipt')]
    assert 'ValueError: cannot mail zed@example.invalid' in dead[0]['error']
    assert project.manage('mqueue', 'retry', '1').stdout.startswith('1 ')
    assert json.loads(project.manage('mqueue_status', '--json').stdout)[0]['ready'] == 1
    assert project.manage('mqueue', 'worker', check=False).returncode == 2   # (the worker is mqueue_worker)
    assert json.loads(project.manage('mqueue', 'status', '--json', '--backend=default').stdout)[0]['queue'] == 'mail'


def test_migrate_makes_the_tables_mqueue_schema_makes(project):
    """The tables `manage.py migrate` made, column by column and index by index, against those
    `mqueue init-db` makes (under other names) in the same database; and migrating back drops them."""
    described = project.shell('''
        import json
        import mqueue
        from django.db import connection
        reference = mqueue.Registry(table='ref_task', cron_table='ref_cron')
        with connection.cursor() as cursor:
            reference.create_tables(cursor.connection)
        introspection = connection.introspection

        def described(table, prefix):
            with connection.cursor() as cursor:
                columns = [(c.name, c.type_code, c.null_ok, c.default)
                           for c in introspection.get_table_description(cursor, table)]
                constraints = {name.replace(prefix, 'T'): (c['columns'], c['unique'], c['primary_key'], c['index'])
                               for name, c in introspection.get_constraints(cursor, table).items()}
            return [repr(columns).replace(prefix, 'T'), repr(sorted(constraints.items()))]
        print(json.dumps([described(mine, mine.split('_r')[0]) + described(theirs, theirs.split('_r')[0])
                          for mine, theirs in (('mqueue_task', 'ref_task'), ('mqueue_task_result', 'ref_task_result'),
                                               ('mqueue_cron', 'ref_cron'), ('mqueue_task_counts', 'ref_task_counts'))]))
    ''')
    for mine_columns, mine_indexes, reference_columns, reference_indexes in described:
        assert mine_columns == reference_columns
        assert mine_indexes == reference_indexes
    assert 'claim' in described[0][1] and 'unique_key' in described[0][1]
    project.manage('migrate', 'mqueue', 'zero', '-v0')
    tables = project.shell('''
        import json
        from django.db import connection
        print(json.dumps(sorted(t for t in connection.introspection.table_names() if t.startswith('mqueue'))))
    ''')
    assert tables == []


def test_an_async_task_sees_current_and_aenqueue_inserts_too(project):
    assert project.shell('''
        import asyncio
        import json
        from testing_tasks import whoami
        print(json.dumps(asyncio.run(whoami.aenqueue()).id))
    ''') == '1'
    project.manage('mqueue_worker', '--burst')
    assert project.shell('''
        import json
        from testing_tasks import whoami
        print(json.dumps(whoami.get_result('1').return_value))
    ''') == [1, 'testing_tasks.whoami']


def test_a_row_naming_anything_but_a_known_task_goes_dead_and_nothing_is_imported(project):
    """A row whose name is a module path that is no task of the backend (here os.system, and a
    module that would say so if imported) is buried by the worker, never imported or called."""
    marker = project.tmp / 'imported'
    (project.tmp / 'tripwire.py').write_text(f'open({str(marker)!r}, "w").close()\ndef run(): pass\n')
    for name in ('os.system', 'tripwire.run', 'shop.tasks.no_such_task'):
        project.sql("INSERT INTO mqueue_task (args, eta, name, queue, retries, priority, enqueued_at) "
                    f"VALUES ('{{\"args\": [\"touch {marker}\"], \"kwargs\": {{}}}}', '2000-01-01 00:00:00', "
                    f"'{name}', 'default', 0, 0, '2000-01-01 00:00:00')")
    project.manage('mqueue_worker', '--burst')
    project.sql("INSERT INTO mqueue_task (args, eta, name, queue, retries, priority, enqueued_at) "
                "VALUES ('{\"order\": 1}', '2000-01-01 00:00:00', 'shop.tasks.send_receipt', 'mail', 0, 0, "
                "'2000-01-01 00:00:00')")   # (a known task, a call it cannot take)
    project.manage('mqueue_worker', '--burst')
    dead = json.loads(project.manage('mqueue', 'dead', '--json').stdout)
    assert sorted(row['name'] for row in dead) == ['os.system', 'shop.tasks.no_such_task', 'shop.tasks.send_receipt',
                                                   'tripwire.run']
    assert sum('UnknownTask' in row['error'] for row in dead) == 3, dead
    assert not marker.exists()
    assert project.shell('''
        import json
        from shop.tasks import send_receipt
        result = send_receipt.get_result('4')
        print(json.dumps([result.status, result.errors[0].exception_class.__name__, result.errors[0].traceback]))
    ''')[:2] == ['FAILED', 'MQueueError']


@pytest.mark.parametrize('project', ['mariadb', 'postgresql', 'postgresql-psycopg2'], indirect=True)
def test_the_worker_replaces_a_connection_the_server_ended_as_a_request_would(project):
    """The worker's connection is ended by the server between two tasks (MariaDB KILL,
    PostgreSQL pg_terminate_backend; SQLite has none to end): the next transaction's
    close_old_connections() replaces it and the second task runs."""
    worker = project.worker()
    try:
        project.shell('''
            from shop.models import Order
            from shop.tasks import send_receipt
            send_receipt.enqueue(Order.objects.create(email='one@example.com', total=1).id)
            print(1)
        ''')
        wait_for(lambda: project.sql('SELECT COUNT(*) FROM shop_receipt') == [[1]], what='the first task')
        kill = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()" if project.database.startswith('postgresql') else None)
        if kill is None:
            ids = project.sql("SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
                              "AND id <> CONNECTION_ID()")
            assert ids, 'the worker has a connection'
            for (connection_id,) in ids:
                project.sql(f'KILL {connection_id}')
        else:
            assert project.sql(kill), 'the worker has a connection'
        project.shell('''
            from shop.models import Order
            from shop.tasks import send_receipt
            send_receipt.enqueue(Order.objects.create(email='two@example.com', total=2).id)
            print(1)
        ''')
        wait_for(lambda: project.sql('SELECT COUNT(*) FROM shop_receipt') == [[2]], what='the second task')
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
    assert worker.returncode == 0, output


def test_a_task_that_swallows_a_database_error_in_its_transaction_fails_and_its_writes_are_gone(project):
    project.shell('''
        from shop.models import Order
        from testing_tasks import swallow
        swallow.enqueue(Order.objects.create(email='sam@example.com', total=1).id)
        print(1)
    ''')
    project.manage('mqueue_worker', '--burst', TASK_RETRIES='0')
    assert project.sql('SELECT COUNT(*) FROM shop_receipt') == [[0]]
    assert project.shell('''
        import json
        from testing_tasks import swallow
        result = swallow.get_result('1')
        print(json.dumps([result.status, result.errors[0].exception_class.__name__]))
    ''') == ['FAILED', 'TransactionManagementError']


def test_an_on_commit_callback_that_raises_neither_undoes_nor_repeats_the_batch(project):
    done = project.tmp / 'callback'
    project.shell(f'''
        from shop.models import Order
        from testing_tasks import with_callbacks
        for n in range(3):
            with_callbacks.enqueue(Order.objects.create(email='cal@example.com', total=n).id, {str(done)!r})
        print(1)
    ''')
    done_run = project.manage('mqueue_worker', '--burst')
    assert done_run.stderr.count('an on_commit() callback of a task raised after its commit') == 3, done_run.stderr
    assert 'ZeroDivisionError' in done_run.stderr and 'run again' not in done_run.stderr
    assert project.sql('SELECT COUNT(*) FROM shop_receipt') == [[3]]
    assert project.sql('SELECT COUNT(*) FROM mqueue_task') == [[0]]
    assert project.sql('SELECT status, attempts FROM mqueue_task_result ORDER BY id') == [['succeeded', 1]] * 3
    assert done.read_text() == '3'   # (every callback ran: the last one's order)


def test_queues_named_on_the_command_line_and_tasks_sent_to_another_backend(project):
    project.shell('''
        from shop.models import Order
        from shop.tasks import audit, send_receipt
        order = Order.objects.create(email='que@example.com', total=1)
        send_receipt.enqueue(order.id)                           # queue mail
        audit.enqueue(order.id)                                  # queue default
        other = Order.objects.create(email='oth@example.com', total=2)
        send_receipt.using(backend='other').enqueue(other.id)    # the other backend's table
        print(1)
    ''')
    project.manage('mqueue_worker', 'default', '--burst')
    assert project.sql('SELECT name FROM mqueue_task') == [['shop.tasks.send_receipt']]
    assert project.sql('SELECT COUNT(*) FROM shop_audit') == [[1]]
    project.manage('mqueue_worker', '--queue', 'mail', '--burst')
    assert project.sql('SELECT COUNT(*) FROM mqueue_task') == [[0]]
    assert project.sql('SELECT name, queue FROM other_task') == [['shop.tasks.send_receipt', 'mail']]
    project.manage('mqueue_worker', '--backend', 'other', '--burst')
    assert project.sql('SELECT COUNT(*) FROM other_task') == [[0]]
    assert project.sql('SELECT status FROM other_task_result') == [['succeeded']]
    assert project.sql('SELECT COUNT(*) FROM shop_receipt') == [[2]]
    assert project.shell('''
        import json
    ''' + f'''
        from {signals_module().rsplit('.', 1)[0]} import task_backends
    ''' + '''
        result = task_backends['other'].get_result('1')
        print(json.dumps([result.status, result.task.backend, result.task.module_path]))
    ''') == ['SUCCESSFUL', 'other', 'shop.tasks.send_receipt']
    status = json.loads(project.manage('mqueue', 'status', '--json', '--backend', 'other').stdout)
    assert status == []


def test_several_worker_threads_run_each_task_once(project):
    project.shell('''
        from shop.models import Order
        from shop.tasks import send_receipt
        for n in range(30):
            send_receipt.enqueue(Order.objects.create(email='many@example.com', total=n).id)
        print(1)
    ''')
    project.manage('mqueue_worker', '--concurrency', '3', '--batch', '4', '--burst')
    assert project.sql('SELECT COUNT(*) FROM shop_receipt') == [[30]]
    assert project.sql('SELECT COUNT(*), MAX(attempts) FROM mqueue_task_result') == [[30, 1]]


def test_the_example_wsgi_application_serves_the_dashboard_under_mqueue_behind_its_password(project):
    example_file('examples/django_project/project/wsgi.py')
    assert project.shell('''
        import base64, io, json
        from wsgiref.util import setup_testing_defaults
        from shop.models import Order
        from shop.tasks import send_receipt
        send_receipt.enqueue(Order.objects.create(email='web@example.com', total=1).id)
        from project.wsgi import application

        def get(path, auth=None):
            environ = {'PATH_INFO': path, 'wsgi.input': io.BytesIO()}
            if auth:
                environ['HTTP_AUTHORIZATION'] = 'Basic ' + base64.b64encode(auth.encode()).decode()
            setup_testing_defaults(environ)
            answer = []
            body = b''.join(application(environ, lambda status, headers: answer.append(status)))
            return [answer[0].split()[0], '>mail<' in body.decode()]   # (the task's queue, on the queues page)
        print(json.dumps([get('/mqueue/scheduled'), get('/mqueue/', 'mqueue:pw'), get('/orders')]))
    ''', MQUEUE_WEB_PASSWORD='pw') == [['401', False], ['200', True], ['405', False]]
