"""mqueue's tests, against real databases: MariaDB on 127.0.0.1:3306 (through pymysql, mysqlclient
and mysql-connector-python), PostgreSQL on 127.0.0.1:5432 (through psycopg 3 and psycopg2) and
SQLite (a file). mysql-connector runs its C extension where it loads in the test process, else
pure Python (test_mysql_connector_is_told_and_classified_in_both_modes covers both either way).

Every test that touches a database runs once per backend (``backend`` is parametrised below);
``@only('mysql')`` keeps a test to the databases it is about. Each test gets its own task/cron
tables (random names) and drops them after, so tests run in any order. Under CI=true an
unreachable server fails the tests instead of skipping them. MQUEUE_TEST_BACKENDS=sqlite,... picks
backends.
"""

import contextlib
import datetime as dt
import functools
import hashlib
import html
import importlib.util
import inspect
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import typing
import uuid
from pathlib import Path

import pytest

import mqueue

ROOT = Path(__file__).resolve().parent
MYSQL_HOST = os.environ.get('MQUEUE_TEST_HOST', '127.0.0.1')
MYSQL_PORT = int(os.environ.get('MQUEUE_TEST_PORT', 3306))
DB = dict(host=MYSQL_HOST, port=MYSQL_PORT, user='root', password='', database='test')   # MariaDB
SQLITE_PATH = os.environ.get('MQUEUE_TEST_SQLITE', os.path.join(tempfile.gettempdir(), f'mqueue-test-{os.getpid()}.db'))
os.environ['MQUEUE_TEST_SQLITE'] = SQLITE_PATH   # worker processes of the tests use the same file
UTC = dt.timezone.utc


class Backend:
    """A database and driver the suite runs on: how to connect, and the bits of SQL tests need."""

    def __init__(self, name, url):
        self.name, self.url = name, url
        self.opener = mqueue.connect_url(url)
        self.dialect = mqueue.DIALECTS[name.split('-')[0].replace('mariadb', 'mysql')]
        self.now = self.dialect.now

    def __repr__(self):
        return self.name

    def connect(self, autocommit=False):
        conn = self.opener()
        if self.dialect.name == 'sqlite':
            conn.isolation_level = None if autocommit else ''
        else:
            mqueue._set_autocommit(conn, autocommit)
        return conn

    def at(self, seconds):
        """SQL for the database's now plus some seconds (negative: ago)."""
        return self.dialect.later.replace('%s', str(int(seconds * 1e6)))

    def shift(self, expression, seconds):
        """SQL for a time expression plus some seconds."""
        now = "'now'" if self.dialect.name == 'sqlite' else self.dialect.now
        return self.at(seconds).replace(now, expression)

    def sql(self, text):
        return text if self.dialect.param == '%s' else text.replace('%s', self.dialect.param)

    def connection_id(self, cursor):
        cursor.execute(self.dialect.connection_info)   # (connection id, server version)
        return cursor.fetchone()[0]

    def kill(self, db, connection_id):
        """End another connection of this server, as an admin would (and a cold shutdown does)."""
        query(db, self.dialect.kill, (connection_id,))

    def lock_timeout(self, cursor, seconds):
        cursor.execute({'mysql': f'SET SESSION innodb_lock_wait_timeout = {seconds}',
                        'postgresql': f"SET lock_timeout = '{seconds}s'"}[self.dialect.name])

    def ledger_ddl(self, name):
        key = {'mysql': 'BIGINT AUTO_INCREMENT PRIMARY KEY', 'postgresql': 'BIGSERIAL PRIMARY KEY',
               'sqlite': 'INTEGER PRIMARY KEY AUTOINCREMENT'}[self.dialect.name]
        return f'CREATE TABLE {name} (id {key}, task_id BIGINT, note VARCHAR(200))'


BACKENDS = {backend.name: backend for backend in (
    Backend('mariadb-pymysql', f'mysql+pymysql://root@{MYSQL_HOST}:{MYSQL_PORT}/test'),
    Backend('mariadb-mysqldb', f'mysql+mysqldb://root@{MYSQL_HOST}:{MYSQL_PORT}/test'),
    Backend('mariadb-connector', f'mysql+connector://root@{MYSQL_HOST}:{MYSQL_PORT}/test'),   # C extension if it loads
    Backend('postgresql-psycopg', 'postgresql+psycopg://postgres@127.0.0.1:5432/test'),
    Backend('postgresql-psycopg2', 'postgresql+psycopg2://postgres@127.0.0.1:5432/test'),
    Backend('sqlite', f'sqlite:///{SQLITE_PATH}'),
)}
CHOSEN = [name for name in os.environ.get('MQUEUE_TEST_BACKENDS', ','.join(BACKENDS)).split(',') if name]
B = BACKENDS[CHOSEN[0]]    # the backend of the running test (set by the backend fixture)


def only(*databases):
    """Run a test on these databases only ('mysql', 'postgresql', 'sqlite'), or these backends."""
    return pytest.mark.databases(*databases)


def pytest_generate_tests(metafunc):
    if 'backend' in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker('databases')
        names = [name for name in CHOSEN if marker is None or name in marker.args
                 or BACKENDS[name].dialect.name in marker.args]
        # pytest-xdist (-n 2 --dist loadgroup, pyproject's addopts) runs MariaDB's tests in one
        # process and the others in another: a test that restarts MariaDB never runs beside one
        # that uses it, and the suite takes about half as long.
        metafunc.parametrize('backend', [pytest.param(name, marks=pytest.mark.xdist_group(
            'mariadb' if name.startswith('mariadb') else 'others')) for name in names], indirect=True)


_reachable = {}


@pytest.fixture
def backend(request):
    global B
    B = BACKENDS[request.param]
    if B.name not in _reachable:
        try:
            B.connect().close()
            _reachable[B.name] = None
        except Exception as exc:
            _reachable[B.name] = f'{B.name} at {B.url} is unreachable: {exc}'
    if _reachable[B.name]:
        if os.environ.get('CI'):
            pytest.fail(_reachable[B.name])
        pytest.skip(_reachable[B.name])
    if B.dialect.name == 'mysql':
        check_the_server_was_not_restarted(request.node)
    return B


_mariadb_seen = {}   # when the MariaDB server started, as this process last saw it, and by which test


def check_the_server_was_not_restarted(test):
    """Fail a test whose server was restarted since the test before it, unless one of the two
    restarts it on purpose: a restart overlapping other tests (issue 12) is named where it lands."""
    conn = connect(autocommit=True)
    try:
        (started,), = query(conn, "SELECT UNIX_TIMESTAMP() - VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                                  "WHERE VARIABLE_NAME = 'UPTIME'")
    finally:
        conn.close()
    restarts = test.get_closest_marker('restarts_server') is not None
    before = _mariadb_seen.get('started'), _mariadb_seen.get('test'), _mariadb_seen.get('restarts')
    _mariadb_seen.update(started=float(started), test=test.nodeid, restarts=restarts)
    if before[0] is not None and abs(float(started) - before[0]) > 2 and not restarts and not before[2]:
        pytest.fail(f'MariaDB was restarted between {before[1]} and this test, and neither restarts it: something '
                    f'else did (another test run, a test not marked restarts_server, an operator)')


@pytest.fixture
def server(backend):
    return backend


def connect(**options):
    """A new connection to the running test's backend (autocommit off unless asked)."""
    return B.connect(**options)


@contextlib.contextmanager
def committed():
    """A new connection for the test's own writes, as an application's: committed after the
    block, and closed."""
    conn = connect()
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def enqueued(reg, name, args=None, **options):
    """One task enqueued and committed, as an application would; its id."""
    with committed() as conn:
        return reg.enqueue(conn, name, args, **options)


def wait_for(predicate, timeout=15.0, interval=0.02):
    """Poll until predicate() is true, failing the test at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout}s waiting for {predicate}')


@pytest.fixture
def db(server):
    """A connection for the test's own SQL, autocommitting, closed after."""
    conn = connect(autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def reg(db):
    """A fresh registry with its own tables, dropped after the test."""
    suffix = uuid.uuid4().hex[:10]
    registry = mqueue.Registry(table=f't_task_{suffix}', cron_table=f't_cron_{suffix}')
    registry.create_tables(db)
    yield registry
    drop_tables(registry.table, registry.cron_table, registry.result_table, registry.counts_table)


@pytest.fixture
def ledger(db):
    """A table tasks write to through their transaction; one row per successful run."""
    name = f't_ledger_{uuid.uuid4().hex[:10]}'
    query(db, B.ledger_ddl(name))
    yield name
    drop_tables(name)


def drop_tables(*names):
    conn = connect(autocommit=True)   # a new connection: a test may have restarted the server
    for name in names:
        query(conn, f'DROP TABLE IF EXISTS {name}')
    conn.close()


class _Cursor:
    """A cursor taking the tests' %s placeholders on every backend."""

    def __init__(self, cursor):
        self.cursor = cursor

    def execute(self, sql, params=()):
        return self.cursor.execute(B.sql(sql), params)

    def executemany(self, sql, rows):
        return self.cursor.executemany(B.sql(sql), rows)

    def __getattr__(self, name):
        return getattr(self.cursor, name)


@contextlib.contextmanager
def cursor_of(conn):
    cursor = conn.cursor()
    try:
        yield _Cursor(cursor)
    finally:
        cursor.close()


def query(db, sql, params=()):
    """Run SQL (with %s placeholders); its rows as a tuple of tuples."""
    with cursor_of(db) as cursor:
        cursor.execute(sql, params)
        return tuple(tuple(row) for row in cursor.fetchall()) if cursor.description else ()


def as_datetime(value):
    return mqueue._utc(value).replace(tzinfo=None) if value is not None else None


def tasks_in(db, reg):
    """Every row of the task table as dicts, by id (times as naive UTC datetimes)."""
    with cursor_of(db) as cursor:
        cursor.execute(f'SELECT * FROM {reg.table} ORDER BY id')
        columns = [column[0] for column in cursor.description]
        rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
    for row in rows:
        row['eta'], row['dead_at'] = as_datetime(row['eta']), as_datetime(row['dead_at'])
    return rows


def database_now(db):
    return as_datetime(query(db, f'SELECT {B.now}')[0][0])


def seconds_until_eta(db, reg, task_id=None):
    """Seconds from the database's now to a task's eta (the newest task's without an id)."""
    where = f'WHERE id = {int(task_id)}' if task_id is not None else 'ORDER BY id DESC LIMIT 1'
    eta = as_datetime(query(db, f'SELECT eta FROM {reg.table} {where}')[0][0])
    return (eta - database_now(db)).total_seconds()


def assert_no_other_worker_can_claim(reg):
    """Another worker cannot take the running task: on MySQL/PostgreSQL its claim skips the locked
    row; on SQLite (one writer at a time) it waits for the write lock, here until a short timeout."""
    if B.dialect.name != 'sqlite':
        assert worker(reg).run_once() == 0
        return
    saved, mqueue.SQLITE_BUSY_TIMEOUT = mqueue.SQLITE_BUSY_TIMEOUT, 0.2
    try:
        with pytest.raises(Exception, match='database is locked'):
            worker(reg).run_once()
    finally:
        mqueue.SQLITE_BUSY_TIMEOUT = saved


def write_ledger(ledger, note=''):
    """Inside a task: one ledger row, written through the worker's transaction."""
    context = mqueue.current()
    with cursor_of(context.connection) as cursor:
        cursor.execute(f'INSERT INTO {ledger} (task_id, note) VALUES (%s, %s)', (context.id, note))


def worker(reg, **options):
    """A worker polling fast, one task per step unless a test asks for batches."""
    options.setdefault('poll_interval', 0.01)
    options.setdefault('batch', 1)
    return mqueue.Worker(connect, registry=reg, **options)


class RecordingConnection:
    """A DB-API connection that appends the SQL of every statement it executes to a list."""

    def __init__(self, conn, sent):
        object.__setattr__(self, '_conn', conn)
        object.__setattr__(self, '_sent', sent)

    def cursor(self, *args):
        conn, sent = self._conn, self._sent
        cursor = conn.cursor(*args)

        class Recording:
            def execute(self, sql, params=None):
                sent.append(sql)
                return cursor.execute(sql, params) if params is not None else cursor.execute(sql)

            def __getattr__(self, name):
                return getattr(cursor, name)
        return Recording()

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __setattr__(self, name, value):   # autocommit, isolation_level: the driver's
        setattr(self._conn, name, value)


def recording_worker(reg, sent, **options):
    """A worker (as worker() makes) whose connections record every statement in ``sent``."""
    w = worker(reg, crons=False, **options)
    w.connect = lambda: RecordingConnection(connect(), sent)
    w.dialect = B.dialect   # (the recording wrapper hides the driver that tells it)
    return w


def run_in_thread(w):
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    return thread


# Without a database server #######################################################################
# These need no server (SQLite files at most), so they run first: `./test` fails fast on a
# broken checkout before it waits on a database.


def test_all_names_what_users_meet():
    """__all__: every public name the docs use (mqueue.X), every error mqueue raises, every type a
    function returns, and nothing private or missing."""
    exported = {}
    exec('from mqueue import *', exported)
    assert set(mqueue.__all__) <= set(exported) and not [name for name in mqueue.__all__ if name.startswith('_')]
    documented = {name for path in DOCUMENTS for name in re.findall(r'\bmqueue\.([A-Za-z_]\w*)', path.read_text())}
    meant = {name for name in documented if hasattr(mqueue, name) and not name.isupper() and not name.startswith('SQL_')}
    assert meant - set(mqueue.__all__) == set()
    public_classes = {name for name, value in vars(mqueue).items() if isinstance(value, type)
                      and value.__module__ == 'mqueue' and not name.startswith('_')}
    errors = {name for name in public_classes if issubclass(getattr(mqueue, name), mqueue.MQueueError)}
    assert errors == {'MQueueError', 'NoConnectionError', 'NotInTaskError', 'TaskTimeout'} <= set(mqueue.__all__)
    returned = set()
    for function in (mqueue.queue_stats, mqueue.dead_tasks, mqueue.current, mqueue.past_timeout):
        hint = typing.get_type_hints(function)['return']   # list[QueueStats], list[DeadTask], TaskContext
        returned |= {(typing.get_args(hint) or (hint,))[0].__name__}
    assert returned == {'QueueStats', 'DeadTask', 'TaskContext', 'PastTimeout'} and returned <= set(mqueue.__all__)


def test_schema_file_is_the_modules_schema():
    assert (ROOT / 'schema.sql').read_text() == mqueue.Registry().schema() == mqueue.Registry().schema('mysql')
    printed = subprocess.run([sys.executable, '-m', 'mqueue', 'schema'], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert printed == mqueue.Registry().schema()
    for dialect in ('mysql', 'postgresql', 'sqlite'):
        assert mqueue.main(['schema', '--dialect', dialect]) == 0
        assert mqueue.Registry(table='jobs').schema(dialect) == \
            mqueue.DIALECTS[dialect].schema.format(task='jobs', cron='cron', result='jobs_result', counts='jobs_counts')
    with pytest.raises(ValueError, match='unknown dialect'):
        mqueue.Registry().schema('oracle')


@pytest.mark.parametrize('name', ['task; DROP TABLE x', 'a-b', '1task', '', 'x' * 65, 'task`', None])
def test_table_names_must_be_plain_identifiers(name):
    with pytest.raises(ValueError, match='plain identifier'):
        mqueue.Registry(table=name)


DOCUMENTS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


def readme_block(label, language='python'):
    """The code block after <!-- example: label --> in README.md or one of docs/*.md."""
    found = [match.group(1) for path in DOCUMENTS for match in re.finditer(
        rf'<!-- example: {re.escape(label)} -->\n```{language}\n(.*?)^```', path.read_text(), re.S | re.M)]
    assert len(found) == 1, f'{len(found)} {language} blocks after <!-- example: {label} --> in README.md and docs/'
    return found[0]


def test_bad_cron_expressions_and_crons_with_arguments_fail_at_decoration():
    reg = mqueue.Registry()
    for expression in ('61 * * * *', 'every hour', '* * * *', '', None):
        with pytest.raises(ValueError, match='invalid cron expression'):
            reg.cron(expression)(lambda: None)
    with pytest.raises(ValueError, match='time zone'):
        reg.cron('@hourly', tz='Mars/Olympus_Mons')(lambda: None)

    def needs(recipient, subject='hi'):
        pass
    with pytest.raises(TypeError, match=r"a cron task takes no arguments, but .*needs\(\) missing a required argument"):
        reg.cron('@hourly')(needs)
    assert reg.tasks == {} and reg.crons == {}

    def optional(recipient='ops@x'):
        pass
    assert reg.cron('* * * * * */10', name='ten-seconds')(optional).name == 'ten-seconds'
    assert reg.crons['ten-seconds'].expression == '* * * * * */10'


def test_the_module_imports_without_croniter_until_a_cron_is_declared():
    code = ('import sys; sys.modules["croniter"] = None\n'
            'import mqueue\n'
            'mqueue.task(lambda: 1)\n'
            'try:\n'
            '    mqueue.cron("@hourly")(lambda: 1)\n'
            'except mqueue.MQueueError as exc:\n'
            '    print(exc)\n')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == 'crons need croniter: pip install croniter'


def fires_on(expression, tz, day):
    """The fires of one local calendar day, as local times with their UTC offsets."""
    schedule = mqueue.Cron(expression, tz=tz)
    zone = schedule.tz
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    fires, instant = [], start - dt.timedelta(microseconds=1)
    while (instant := schedule.next_fire(instant)) < end:
        fires.append(instant)
    for previous, fire in zip([None] + fires, fires):   # newest_fire agrees with next_fire
        assert schedule.newest_fire(fire) == fire
        if previous:
            assert schedule.newest_fire(fire - dt.timedelta(microseconds=1)) == previous
    return [f.astimezone(zone).strftime('%H:%M%z') for f in fires]


def test_daylight_saving_days_in_berlin_give_the_documented_fires():
    spring, autumn = dt.date(2026, 3, 29), dt.date(2026, 10, 25)
    berlin = 'Europe/Berlin'
    # Spring forward (02:00 -> 03:00): a time in the gap moves forward by the gap, once.
    assert fires_on('30 2 * * *', berlin, spring) == ['03:30+0200']
    assert fires_on('*/30 2-3 * * *', berlin, spring) == ['03:00+0200', '03:30+0200']
    hourly = fires_on('0 * * * *', berlin, spring)
    assert len(hourly) == 23 and hourly[:3] == ['00:00+0100', '01:00+0100', '03:00+0200']
    # Fall back (03:00 -> 02:00): a fixed hour fires once, an hour field of * fires in both passes.
    assert fires_on('30 2 * * *', berlin, autumn) == ['02:30+0200']
    assert fires_on('15 1-3 * * *', berlin, autumn) == ['01:15+0200', '02:15+0200', '03:15+0100']
    hourly = fires_on('0 * * * *', berlin, autumn)
    assert len(hourly) == 25 and hourly[2:4] == ['02:00+0200', '02:00+0100']
    assert fires_on('*/30 * * * *', berlin, autumn)[4:8] == ['02:00+0200', '02:30+0200', '02:00+0100', '02:30+0100']
    # An ordinary day, and the default zone
    assert fires_on('0 9 * * 1-5', berlin, dt.date(2026, 11, 30)) == ['09:00+0100']
    assert len(fires_on('@hourly', 'UTC', spring)) == 24
    assert len(fires_on('*/5 * * * *', 'UTC', spring)) == 288


def test_backoff_stays_within_its_bounds():
    for attempt in range(1, 40):
        ceiling = min(mqueue.MAX_BACKOFF, 5.0 * 2 ** (attempt - 1))
        for _ in range(50):
            assert ceiling / 2 <= mqueue.backoff(5.0, attempt) <= ceiling
    assert mqueue.backoff(0, 3) == 0


@only('sqlite')   # (the CLI's start-up is the same on every database)
def test_a_signal_while_the_cli_worker_imports_its_tasks_is_a_clean_stop(tmp_path):
    package = tmp_path / f'tasks_{uuid.uuid4().hex[:8]}'
    package.mkdir()
    (package / '__init__.py').write_text(
        'import pathlib, time\n'
        f'marks = pathlib.Path({str(tmp_path)!r})\n'
        "(marks / 'importing').touch()\n"
        'deadline = time.monotonic() + 20\n'
        "while not (marks / 'go').exists() and time.monotonic() < deadline:   # a big app imports for a while\n"
        '    time.sleep(0.01)\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, '-m', 'mqueue', 'worker', '--db', f'sqlite:///{tmp_path}/q.db',
                              '--tasks', package.name], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (tmp_path / 'importing').exists())
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=20)
    finally:
        (tmp_path / 'go').touch()
        child.kill() if child.poll() is None else None
    assert child.returncode == 0, out
    assert out.strip() == 'SIGTERM while the worker was starting: stopped before it ran any task'


def test_worker_options_are_checked():
    reg = mqueue.Registry()
    with pytest.raises(ValueError, match='concurrency'):
        mqueue.Worker(connect, registry=reg, concurrency=0)
    with pytest.raises(ValueError, match='unknown hooks'):
        mqueue.Worker(connect, registry=reg, hooks={'before': print})
    with pytest.raises(ValueError, match='connection factory'):
        mqueue.Worker(object(), registry=reg, concurrency=2)
    with pytest.raises(mqueue.MQueueError, match='no tasks are registered'):
        mqueue.Worker(connect, registry=reg).run(burst=True)
    # Numbers: a bool is no number, and nothing infinite, NaN or absurdly long gets through to the SQL
    for option, bad in (('concurrency', True), ('batch', 2.0), ('lease', 0), ('lease', float('inf')),
                        ('poll_interval', float('nan')), ('poll_interval', -1), ('lease', False)):
        with pytest.raises(ValueError, match=f'^{option} must be a'):
            mqueue.Worker(connect, registry=reg, **{option: bad})
    assert mqueue.Worker(connect, registry=reg, lease=dt.timedelta(minutes=2), batch=5).lease == 120.0
    for option, bad in (('retries', -1), ('retries', 1.5), ('backoff', 3601), ('priority', 40000), ('priority', True)):
        with pytest.raises(ValueError, match=f'^{option} must be a'):
            reg.task(name='checked', **{option: bad})(lambda: None)
    assert reg.task(name='checked', backoff=dt.timedelta(seconds=90))(lambda: None).backoff == 90.0


def test_cli_help_of_every_command_has_an_example(capsys):
    parser, subparsers = mqueue._parser()
    assert set(subparsers) == {'worker', 'web', 'status', 'dead', 'retry', 'cancel', 'purge', 'result', 'enqueue',
                               'crons', 'init-db', 'schema'}
    for name in subparsers:
        with pytest.raises(SystemExit) as exit_:
            mqueue.main([name, '--help'])
        out = capsys.readouterr().out
        assert exit_.value.code == 0 and f'usage: mqueue {name}' in out
        assert re.search(rf'examples:\n  mqueue {name} ', out), out
        for action in subparsers[name]._actions:
            assert action.help, (name, action.dest)   # every option is explained


def make_tasks_package(tmp_path, package):
    root = tmp_path / package
    (root / 'sub').mkdir(parents=True)
    (root / '__init__.py').write_text('')
    (root / 'mail.py').write_text('import mqueue\n\n@mqueue.task\ndef send(to):\n    pass\n')
    (root / 'sub' / '__init__.py').write_text('')
    (root / 'sub' / 'deep.py').write_text(
        'import mqueue\n\n@mqueue.task(name="deep")\ndef deep(path):\n    open(path, "w").write("ran")\n')
    return root


def test_the_mqueue_console_script_is_installed():
    script = shutil.which('mqueue')
    if script is None:
        message = "no `mqueue` on PATH: install the package (pip install -e '.[test]')"
        pytest.fail(message) if os.environ.get('CI') else pytest.skip(message)
    done = subprocess.run([script, 'schema'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == mqueue.Registry().schema()


@only('sqlite')
def test_cli_without_a_database_uses_sqlite_in_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('MQUEUE_DATABASE_URL', raising=False)
    make_tasks_package(tmp_path, 'default_db_tasks')
    env = {k: v for k, v in os.environ.items() if k != 'MQUEUE_DATABASE_URL'}
    env['PYTHONPATH'] = str(ROOT)
    done = subprocess.run([sys.executable, '-m', 'mqueue', 'worker', '--tasks', 'default_db_tasks', '--burst'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    conn = mqueue.connect_url(f'sqlite:///{tmp_path / "mqueue.db"}')()   # created, with its tables
    mqueue.enqueue(conn, 'deep', [str(tmp_path / 'out')])
    conn.commit()
    conn.close()
    done = subprocess.run([sys.executable, '-m', 'mqueue', 'worker', '--tasks', 'default_db_tasks', '--burst'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and (tmp_path / 'out').read_text() == 'ran', done.stderr


def test_connect_url_parses_credentials():
    connect_ = mqueue.connect_url('mysql://app:s%40cret@db.example:3307/shop')
    assert connect_.description == 'mysql://app@db.example:3307/shop'       # never the password
    assert mqueue.connect_url('postgresql://app:pw@db/shop').description == 'postgresql://app@db:5432/shop'
    assert mqueue.connect_url('sqlite:///rel/q.db').description == 'sqlite:///rel/q.db'
    for spelling in ('connector', 'mysqlconnector'):   # (SQLAlchemy's)
        assert mqueue.connect_url(f'mysql+{spelling}://app@db/shop').description == 'mysql://app@db:3306/shop'
    assert mqueue.connect_url('sqlite:////abs/q.db').description == 'sqlite:////abs/q.db'
    for bad, error in (('oracle://x/y', 'unsupported'), ('mysql+odbc://x/y', 'unknown driver'),
                       ('sqlite://host/x.db', 'bad SQLite URL')):
        with pytest.raises(ValueError, match=error):
            mqueue.connect_url(bad)
    several = mqueue.connect_url('postgresql://app:pw@db1,db2:5433/shop?target_session_attrs=read-write')
    assert several.description == 'postgresql://app@db1:5432,db2:5433/shop'
    assert mqueue.connect_url('mysql://app@n1:3307,[::1]/shop').description == 'mysql://app@n1:3307,[::1]:3306/shop'
    for bad in ('mysql://app:p@n1:x,n2/shop', 'mysql://[x/db', 'mysql://n1,,n2/shop', 'mysql://n1:70000/shop'):
        with pytest.raises(ValueError, match='bad database URL') as error:
            mqueue.connect_url(bad)
        assert 'p@' not in str(error.value)


@only('mariadb-pymysql', 'postgresql-psycopg', 'postgresql-psycopg2')
def test_a_url_naming_several_hosts_connects_to_the_first_that_takes_it(db):
    """A Galera cluster's nodes, or a PostgreSQL failover pair (libpq: with target_session_attrs):
    a host that refuses the connection is passed over."""
    scheme, _, rest = B.url.partition('://')
    account, _, where = rest.partition('@')
    host, _, database = where.partition('/')
    url = f'{scheme}://{account}@127.0.0.1:{free_port()},{host}/{database}'
    if B.dialect.name == 'postgresql':   # libpq's parameters; not those naming what the URL names, nor the driver's
        url += '?target_session_attrs=read-write&connect_timeout=2&application_name=mq-test&host=/no&prepare_threshold=x'
    conn = mqueue.connect_url(url)()
    try:
        with cursor_of(conn) as cursor:
            cursor.execute('SHOW application_name' if B.dialect.name == 'postgresql' else 'SELECT 1')
            assert cursor.fetchone()[0] == ('mq-test' if B.dialect.name == 'postgresql' else 1)
    finally:
        conn.close()
    with pytest.raises(Exception) as refused:   # none takes it: the last host's error
        mqueue.connect_url(f'{scheme}://{account}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/{database}')()
    assert mqueue._retryable(refused.value)


def test_readme_first_command_needs_no_database_server(tmp_path):
    """`python examples/demo.py` with no URL: SQLite, a file in the current folder; -S: no
    site-packages, so nothing installed is used (mqueue.py comes from the checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ('MQUEUE_DATABASE_URL', 'PYTHONPATH')}
    done = subprocess.run([sys.executable, '-S', str(ROOT / 'examples' / 'demo.py')], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith('database: sqlite:///mqueue-demo.db') and (tmp_path / 'mqueue-demo.db').exists()
    assert "mails to ghost@example.com: 0" in done.stdout and 'processed 7 task runs' in done.stdout


def module_docstring_example():
    """The example in mqueue.py's module docstring: the literal block after its first '::'."""
    lines = mqueue.__doc__.split('::\n', 1)[1].split('\n')
    block = []
    for line in lines:
        if line and not line.startswith('    '):
            break
        block.append(line)
    return textwrap.dedent('\n'.join(block)).strip('\n') + '\n'


def document_blocks(path):
    """Each fenced block of a Markdown file: (language, label of the marker line before it or None, text)."""
    lines = path.read_text().split('\n')
    blocks, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r'```(\w*)', lines[i])
        if fence:
            end = lines.index('```', i + 1)
            marker = re.fullmatch(r'<!-- example: (\S+) -->', lines[i - 1]) if i else None
            blocks.append((fence.group(1), marker and marker.group(1), '\n'.join(lines[i + 1:end]) + '\n'))
            i = end
        i += 1
    return blocks


def test_every_python_and_sql_block_of_readme_and_docs_is_run_by_a_test():
    """Each ```python and ```sql block of README.md and docs/*.md follows a marker line
    <!-- example: label --> whose label (unique) a test in this file reads with readme_block,
    readme_example, example_file, example_module or run_docs_example (or test_django.py with its
    example_file). A label that is a path under examples/ names
    the file the block shows, which must be identical to it. Blocks in other languages are exempt:
    bash and console (commands), text (sample output), ini (a systemd unit)."""
    source = Path(__file__).read_text() + (ROOT / 'test_django.py').read_text()
    seen, unmarked, unrun = set(), [], []
    for path in DOCUMENTS:
        for language, label, text in document_blocks(path):
            if language not in ('python', 'sql'):
                assert language in ('bash', 'console', 'text', 'ini'), (path.name, language, text[:80])
                continue
            if label is None:
                unmarked.append(f'{path.relative_to(ROOT)}: {text.splitlines()[0]}')
                continue
            assert label not in seen, f'two blocks are labelled {label}'
            seen.add(label)
            if label.startswith('examples/'):
                assert (ROOT / label).read_text() == text, f'{path.name} shows {label} other than it is'
            if not re.search(rf"\b(readme_block|readme_example|example_file|example_module|run_docs_example)"
                             rf"\('{re.escape(label)}'",
                             source):
                unrun.append(label)
    assert not unmarked, f'blocks without <!-- example: label -->: {unmarked}'
    assert not unrun, f'labels no test runs: {unrun}'
    assert {'first-screen', 'upgrade-sql', 'examples/sqlalchemy_session.py'} <= seen


def github_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file (code blocks left out)."""
    text = re.sub(r'^```.*?^```', '', path.read_text(), flags=re.S | re.M)
    anchors = []
    for heading in re.findall(r'^#+ (.*)$', text, re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
        anchors.append(slug if slug not in anchors else f'{slug}-{anchors.count(slug)}')
    return anchors


def test_every_link_between_readme_docs_and_files_resolves():
    """Every relative link in README.md and docs/*.md names a file or folder that exists, and an
    anchor in it names one of its headings (GitHub's slug: lower case, punctuation dropped, spaces
    to hyphens)."""
    broken, checked = [], 0
    for path in DOCUMENTS:
        text = re.sub(r'^```.*?^```', '', path.read_text(), flags=re.S | re.M)   # code is not links
        text = re.sub(r'`[^`\n]*`', '', text)
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+:', target):
                continue   # http(s): and the like
            checked += 1
            file, _, anchor = target.partition('#')
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f'{path.name}: {target} (no such file)')
            elif anchor and (resolved.suffix != '.md' or anchor not in github_anchors(resolved)):
                broken.append(f'{path.name}: {target} (no such heading)')
    assert checked > 20 and not broken, broken
    assert github_anchors(ROOT / 'docs' / 'hooks.md')[-1] == 'sqlalchemy-dao-sessioncontext-the-original-packages-setup'


def test_readme_opens_with_the_example_and_stays_short():
    """README is a front door: its first code block is the first-screen example, within the first
    screen; the guides live in docs/ (README stays near 250 lines, never over 300)."""
    readme = (ROOT / 'README.md').read_text()
    language, label, _ = document_blocks(ROOT / 'README.md')[0]
    assert (language, label) == ('python', 'first-screen')
    assert readme.split('\n').index('<!-- example: first-screen -->') < 15
    assert len(readme.splitlines()) <= 300
    assert re.search(r'^```bash\n\./test\n```$', readme, re.M)   # the test command CI runs


@pytest.mark.parametrize('where', ['README.md', 'mqueue.py'])
def test_the_first_screen_example_runs_in_an_empty_folder(where, tmp_path):
    """README's first screen and mqueue.py's docstring show the same example. Each, run by a fresh
    interpreter in an empty folder (a new app.db), leaves the task's outbox row and no task row."""
    assert module_docstring_example() == readme_block('first-screen')
    code = readme_block('first-screen') if where == 'README.md' else module_docstring_example()
    env = {k: v for k, v in os.environ.items() if k != 'MQUEUE_DATABASE_URL'}
    done = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=dict(env, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr
    conn = sqlite3.connect(tmp_path / 'app.db')
    try:
        assert conn.execute('SELECT address, subject FROM outbox').fetchall() == [('a@example.com', 'hi')]
        assert conn.execute('SELECT id, name, dead_at FROM task').fetchall() == []
    finally:
        conn.close()


json_values = None


try:
    from hypothesis import HealthCheck, given, settings, strategies as st
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-2 ** 53, 2 ** 53) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(), lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
        max_leaves=12)
except ImportError:   # hypothesis is in the test extra; without it these two tests are skipped
    pass


@pytest.mark.skipif(json_values is None, reason='pip install hypothesis')
def test_backoff_is_within_its_bounds_for_every_attempt():
    @given(base=st.floats(0, mqueue.MAX_BACKOFF), attempt=st.integers(1, 10_000))
    def within(base, attempt):
        ceiling = min(mqueue.MAX_BACKOFF, base * 2.0 ** min(attempt - 1, 64))
        assert ceiling / 2 <= mqueue.backoff(base, attempt) <= ceiling
    within()


# Schema ##########################################################################################


def test_the_dialect_is_told_by_the_driver_or_given(backend):
    conn = connect()
    try:
        assert mqueue.Registry().dialect_of(conn) is backend.dialect
        assert mqueue.Registry(dialect='sqlite').dialect_of(conn).name == 'sqlite'   # given: it wins
    finally:
        conn.close()
    with pytest.raises(mqueue.MQueueError, match='give Registry.dialect=...'):
        mqueue.Registry().dialect_of(object())


def example_file(path):
    """A file of examples/ that docs/ shows whole (after <!-- example: path -->): its absolute path,
    once the block is checked to be the file as it is."""
    assert readme_block(path) == (ROOT / path).read_text(), f'{path} is not what docs/ shows of it'
    return ROOT / path


def example_module(path):
    """A file of examples/ imported as a new module (each call a fresh one, so its tasks register again)."""
    spec = importlib.util.spec_from_file_location(f'example_{uuid.uuid4().hex[:8]}', example_file(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_tables(sql, table, cron_table):
    """SQL from docs/ with the tables task and cron renamed; its statements, one string each."""
    sql = re.sub(r'\bcron\b', cron_table, re.sub(r'\btask\b', table, sql))
    return [statement.strip() for statement in sql.split(';') if statement.strip()]


def create_table_ddl(db, table):
    ddl = query(db, f'SHOW CREATE TABLE {table}')[0][1]
    return re.sub(r'`[^`]*(task|cron)_[0-9a-f]+`', r'`\1`', ddl)


@contextlib.contextmanager
def the_original_packages_tables(db, *rows):
    """Tables as the original package created them, with rows it left (INSERTs naming the tables
    {task} and {cron}), upgraded by docs/upgrading.md's statements: a registry on them, dropped after."""
    old = mqueue.Registry(table='t_task_' + uuid.uuid4().hex[:10], cron_table='t_cron_' + uuid.uuid4().hex[:10])
    try:
        with cursor_of(db) as cursor:
            for statement in with_tables(readme_block('original-tables', 'sql'), old.table, old.cron_table):
                cursor.execute(statement)
            for row in rows:
                cursor.execute(row.format(task=old.table, cron=old.cron_table))
            for statement in with_tables(readme_block('upgrade-sql', 'sql'), old.table, old.cron_table):
                cursor.execute(statement)
        yield old
    finally:
        with cursor_of(db) as cursor:
            cursor.execute(f'DROP TABLE IF EXISTS {old.table}, {old.cron_table}, {old.result_table}, {old.counts_table}')


@only('mariadb-pymysql')
def test_readme_upgrade_turns_the_seed_schema_into_the_current_one(db, reg):
    # a task the original package left behind: keyword args, module.function name, five failures
    # counted, and times in the local time of its host, here UTC+8 (as docs/upgrading.md's data fixes say)
    with the_original_packages_tables(db, "INSERT INTO {task} (args, eta, name, queue, retries) VALUES "
                                          "('{{\"receiver\": \"a@b.c\", \"subject\": \"hi\"}}', "
                                          "UTC_TIMESTAMP() + INTERVAL 8 HOUR, 'tasks.mail', 'test-queue', 5)",
                                      "INSERT INTO {cron} (queue, name, last) VALUES ('test-queue', 'tasks.hourly', "
                                      "UTC_TIMESTAMP() + INTERVAL 8 HOUR)") as old:
        for new_table, old_table in ((reg.table, old.table), (reg.cron_table, old.cron_table)):
            expected = re.sub(r'AUTO_INCREMENT=\d+ ', '', create_table_ddl(db, new_table))
            assert re.sub(r'AUTO_INCREMENT=\d+ ', '', create_table_ddl(db, old_table)) == expected
        with cursor_of(db) as cursor:   # the data fixes, on one connection (they set a session variable)
            for statement in with_tables(readme_block('original-data-fixes', 'sql'), old.table, old.cron_table):
                cursor.execute(statement)
        (eta, retries), = query(db, f'SELECT eta, retries FROM {old.table}')
        (last,), = query(db, f'SELECT last FROM {old.cron_table}')
        now = database_now(db)
        assert retries == 0 and abs((eta - now).total_seconds()) < 60 and abs((last - now).total_seconds()) < 60

        sent = []
        seed_style = mqueue.Registry(table=old.table, cron_table=old.cron_table, queue='test-queue')

        def mail(receiver, subject):
            sent.append((receiver, subject))
        mail.__module__, mail.__qualname__ = 'tasks', 'mail'
        assert seed_style.task(mail).name == 'tasks.mail'
        assert worker(seed_style).run(burst=True) == 1
        assert sent == [('a@b.c', 'hi')]
        assert tasks_in(db, old) == []


@only('mariadb-pymysql')   # (the original package ran on MySQL; docs/upgrading.md's daemon connects with mysql://)
def test_the_original_application_and_daemon_ported_as_readme_says_run_old_rows_and_fire_old_crons(db, tmp_path):
    """The original's shape end to end: its tables upgraded by docs/upgrading.md's SQL, a task row
    and a cron row it left, its tasks package unchanged, and that guide's port of its daemon, which
    must run the old task and fire the cron (issue 12: a worker serving the old queue ignored a bare @cron)."""
    with the_original_packages_tables(
            db, "INSERT INTO {task} (args, eta, name, queue, retries) VALUES ('{{\"receiver\": \"ann@example.com\", "
                "\"subject\": \"hi\", \"body\": \"...\"}}', UTC_TIMESTAMP(), 'tasks.mail', 'test-queue', 0)",
            "INSERT INTO {cron} (queue, name, last) VALUES ('test-queue', 'tasks.hourly', "
            "UTC_TIMESTAMP() - INTERVAL 3 HOUR)") as old:
        (tmp_path / 'tasks').mkdir()
        (tmp_path / 'tasks' / '__init__.py').write_text(readme_block('original-tasks'))
        daemon = readme_block('original-daemon')
        for readme_text, ours in ((".init('test-queue')", f".init('test-queue', table={old.table!r}, "
                                                          f"cron_table={old.cron_table!r})"),
                                  ("'mysql://test:test@localhost/website'", repr(B.url))):
            assert readme_text in daemon
            daemon = daemon.replace(readme_text, ours)
        (tmp_path / 'daemon.py').write_text(daemon)
        child = subprocess.Popen([sys.executable, 'daemon.py'], cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        try:
            def fired():
                (last, task_id), = query(db, f'SELECT last, task_id FROM {old.cron_table}')
                return task_id is not None and not query(db, f'SELECT id FROM {old.table}')
            wait_for(fired, timeout=30)
        finally:
            child.send_signal(signal.SIGTERM)
            out, err = child.communicate(timeout=20)
        assert child.returncode == 0, err
        assert out.splitlines() == ['Send mail to ann@example.com', 'Hourly cron'] or \
            out.splitlines() == ['Hourly cron', 'Send mail to ann@example.com'], (out, err)
        (last, task_id), = query(db, f'SELECT last, task_id FROM {old.cron_table}')
        hour = database_now(db).replace(minute=0, second=0, microsecond=0)
        assert last == hour   # the newest fire, covering the three missed hours with one task
        assert 'have no queue' not in err and 'matches no declared cron' not in err, err


NEW_IN_0_4 = ('enqueued_at', 'started_at', 'deadline', 'worker', 'errors', 'unique_key')


def schema_0_3(dialect):
    """mqueue 0.3's schema, as it created the tables: today's without 0.4's columns, their
    indexes, SQLite's claimed index and the results table."""
    text = mqueue.DIALECTS[dialect].schema
    text = re.sub(r'\n-- What tasks that keep a result.*', '\n', text, flags=re.S)   # (the last table)
    text = re.sub(rf'\n    ({"|".join(NEW_IN_0_4)}) [^\n]*', '', text)
    text = re.sub(r'\n    UNIQUE KEY unique_key [^\n]*|\n-- The keyed tasks alone[^\n]*|\nCREATE UNIQUE INDEX [^\n]*', '', text)
    if dialect == 'sqlite':
        text = re.sub(r'\nCREATE INDEX IF NOT EXISTS {task}_claimed [^\n]*', '', text)
    text = re.sub(r'(last_error TEXT NULL),( +-- [^\n]*\n\))', r'\1 \2', text)   # (the last column, but in MySQL)
    assert not re.search(rf'\n    ({"|".join(NEW_IN_0_4)}) |unique', text) and '{result}' not in text
    return text


def table_definition(db, table):
    """A table's columns and indexes as the database describes them, its name written as task."""
    if B.dialect.name == 'mysql':
        return re.sub(r'AUTO_INCREMENT=\d+ ', '', create_table_ddl(db, table)).replace(f'`{table}`', '`task`')
    if B.dialect.name == 'postgresql':
        return postgresql_table_definition(db, table)
    columns = query(db, f"SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{table}') ORDER BY cid")
    indexes = query(db, f"SELECT name, \"unique\", partial FROM pragma_index_list('{table}') ORDER BY name")
    shapes = [(name, query(db, f"SELECT name FROM pragma_index_info('{name}') ORDER BY seqno"),
               query(db, 'SELECT sql FROM sqlite_master WHERE name = ?', (name,))) for name, _, _ in indexes]
    return re.sub(rf'\b{table}', 'task', repr((columns, indexes, shapes)))


def upgrade_from_0_3_sql(dialect):
    """docs/upgrading.md's statements upgrading a 0.3 table on this database, one string each."""
    block = re.search(rf'-- {dialect}\n(.*?)(?=^-- |\Z)', readme_block('upgrade-0.3-sql', 'sql'), re.S | re.M)
    return [statement.strip() for statement in block.group(1).split(';') if statement.strip()]


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_readme_upgrade_turns_a_0_3_table_into_the_current_one(db, reg):
    """A table made by 0.3, holding a task 0.3 enqueued: a 0.4 worker refuses it with the way to
    upgrade; docs/upgrading.md's statements, then create_tables (the results table), make it
    exactly today's, and the old task and a new one run, the new one with its enqueued_at."""
    old = mqueue.Registry(table=f't_old_{uuid.uuid4().hex[:8]}', cron_table=f't_oldcron_{uuid.uuid4().hex[:8]}')
    try:
        create_tables_from(db, schema_0_3(B.dialect.name), old)
        ran = []
        old.task(name='t')(lambda n: ran.append(n))
        query(db, B.sql(f"INSERT INTO {old.table} (args, eta, name, queue, retries, priority) "   # 0.3's enqueue
                        f"VALUES ('[1]', {B.now}, 't', 'default', 0, 0)"))
        with pytest.raises(mqueue.MQueueError, match='lacks a column.*Upgrading'):
            mqueue.Worker(connect, registry=old, poll_interval=0.01).run(burst=True)
        assert table_definition(db, old.table) != table_definition(db, reg.table)
        for statement in upgrade_from_0_3_sql(B.dialect.name):   # (PostgreSQL's CONCURRENTLY: autocommit)
            query(db, re.sub(r'\btask(?=\b|_unique|_claimed)', old.table, statement))
        old.create_tables(db)
        if B.dialect.name == 'sqlite':
            db.commit() if db.in_transaction else None
        assert table_definition(db, old.table) == table_definition(db, reg.table)
        assert table_definition(db, old.result_table) == table_definition(db, reg.result_table)
        new_id = enqueued(old, 't', [2])
        assert [(row['id'] == new_id, row['enqueued_at'] is None) for row in tasks_in(db, old)] == [
            (False, True), (True, False)]   # 0.3's row has no enqueued_at, 0.4's has
        assert mqueue.Worker(connect, registry=old, poll_interval=0.01).run(burst=True) == 2 and sorted(ran) == [1, 2]
        assert query(db, f'SELECT COUNT(*) FROM {old.table}') == ((0,),)
    finally:
        drop_tables(old.table, old.cron_table, old.result_table, old.counts_table)


# mqueue 0.2's PostgreSQL schema, as it created the tables: the claim index that 0.3 replaced.
SCHEMA_0_2_POSTGRESQL = """\
CREATE TABLE IF NOT EXISTS {task} (
    id BIGSERIAL PRIMARY KEY,
    args TEXT NOT NULL,                    -- JSON: a list (positional) or an object (keyword arguments)
    eta TIMESTAMP(6) NOT NULL,             -- UTC: due time, or while claimed the end of the lease
    name VARCHAR(128) NOT NULL,            -- the registered task name, e.g. tasks.mail
    queue VARCHAR(32) NOT NULL,
    retries SMALLINT NOT NULL DEFAULT 0,   -- attempts begun (counted when claimed)
    priority SMALLINT NOT NULL DEFAULT 0,  -- smaller runs first
    claimed_at TIMESTAMP(6) NULL,          -- UTC: when a worker claimed the attempt now running; NULL once it ends
    dead_at TIMESTAMP(6) NULL,             -- UTC: when the task gave up (dead: never claimed)
    last_error TEXT NULL                   -- the last failure: type, message, traceback
);
CREATE INDEX IF NOT EXISTS {task}_claim ON {task} (queue, dead_at, priority, eta);

CREATE TABLE IF NOT EXISTS {cron} (
    queue VARCHAR(32) NOT NULL,
    name VARCHAR(128) NOT NULL,
    last TIMESTAMP(6) NOT NULL,            -- UTC: the newest fire already covered
    task_id BIGINT NULL,                   -- the task enqueued for it (no new one while it is pending)
    PRIMARY KEY (queue, name)
);
"""


@only('mariadb-pymysql')
def test_readme_upgrade_turns_a_0_2_mysql_table_into_the_current_one(db, reg, caplog):
    """A 0.2 table (0.3's without the claimed index), upgraded by docs/upgrading.md's statements
    for 0.3 (the columns): a worker runs on it, saying once that it does not rescue; then 0.2's
    (the index) make it today's, and the worker rescues."""
    old = mqueue.Registry(table=f't_task_{uuid.uuid4().hex[:8]}', cron_table=f't_cron_{uuid.uuid4().hex[:8]}')
    schema_0_2 = re.sub(r',\n    KEY claimed \(claimed_at\)[^\n]*', '', schema_0_3('mysql'))
    assert schema_0_2 != schema_0_3('mysql')
    try:
        create_tables_from(db, schema_0_2, old)
        for statement in upgrade_from_0_3_sql('mysql'):
            query(db, statement.replace('ALTER TABLE task', f'ALTER TABLE {old.table}'))
        old.create_tables(db)
        old.task(name='t')(lambda: None)
        enqueued(old, 't', [])
        with caplog.at_level(logging.WARNING, logger='mqueue'):
            w = mqueue.Worker(connect, registry=old, poll_interval=0.01)
            assert w.run(burst=True) == 1 and not w._can_rescue()
        assert f'no rescue of a dead worker\'s tasks: table {old.table} has no index on claimed_at' in caplog.text
        for statement in upgrade_from_0_2_sql('mysql'):
            query(db, statement.replace('ALTER TABLE task', f'ALTER TABLE {old.table}'))
        assert table_definition(db, old.table) == table_definition(db, reg.table)
        w = mqueue.Worker(connect, registry=old, poll_interval=0.01)
        enqueued(old, 't', [])
        assert w.run(burst=True) == 1 and w._can_rescue()
    finally:
        drop_tables(old.table, old.cron_table, old.result_table, old.counts_table)


def create_tables_from(db, schema, registry):
    """An older version's tables, from its schema text, for a registry."""
    for statement in schema.format(task=registry.table, cron=registry.cron_table, result=registry.result_table,
                                        counts=registry.counts_table).split(';\n'):
        if statement.strip():
            query(db, statement)


def upgrade_from_0_2_sql(dialect):
    """docs/upgrading.md's statements upgrading a 0.2 table on this database, one string each."""
    block = re.search(rf'-- {dialect}\n(.*?)(?=^-- |\Z)', readme_block('upgrade-0.2-sql', 'sql'), re.S | re.M)
    return [statement.strip() for statement in block.group(1).split(';') if statement.strip()] if block else []


def postgresql_table_definition(db, table):
    """A PostgreSQL table's columns and indexes, with its name written as task."""
    columns = query(db, 'SELECT column_name, data_type, character_maximum_length, datetime_precision, is_nullable, '
                        'column_default FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position',
                    (table,))
    indexes = query(db, 'SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname', (table,))
    return re.sub(rf'\b{table}', 'task', repr((columns, indexes)))


@only('postgresql')
def test_readme_upgrade_turns_a_0_2_table_into_the_current_one(db, reg):
    old = mqueue.Registry(table=f't_old_{uuid.uuid4().hex[:8]}', cron_table=f't_oldcron_{uuid.uuid4().hex[:8]}')
    try:
        create_tables_from(db, SCHEMA_0_2_POSTGRESQL, old)
        old.task(name='t')(lambda: None)
        query(db, f"INSERT INTO {old.table} (args, eta, name, queue, retries, priority) "   # 0.2's enqueue
                  f"VALUES ('[]', {B.now}, 't', 'default', 0, 0)")
        assert postgresql_table_definition(db, old.table) != postgresql_table_definition(db, reg.table)
        statements = upgrade_from_0_2_sql('postgresql')
        assert statements and upgrade_from_0_2_sql('sqlite') == []
        for statement in statements + upgrade_from_0_3_sql('postgresql'):   # CONCURRENTLY: each on its own,
            query(db, re.sub(r'\btask(?=\b|_claim|_unique)', old.table, statement))   # in autocommit mode
        old.create_tables(db)
        assert postgresql_table_definition(db, old.table) == postgresql_table_definition(db, reg.table)
        assert postgresql_table_definition(db, old.cron_table) == postgresql_table_definition(db, reg.cron_table)
        assert mqueue.Worker(connect, registry=old, poll_interval=0.01).run(burst=True) == 1
    finally:
        drop_tables(old.table, old.cron_table, old.result_table, old.counts_table)


# Errors ##########################################################################################


# How mqueue must classify each real error, whatever the driver: a missing table or column stops
# a worker with advice, a lock conflict runs the task again at once uncounted, a lost connection
# is retried, and anything else is the task's (or the caller's) own failure.
VERDICTS = {'missing table': 'missing table', 'missing column': 'missing column', 'syntax error': 'other',
            'lock wait timeout': 'lock conflict', 'lost connection': 'retryable'}


def verdict(exc):
    problem = mqueue._schema_problem(exc) or ''
    return ('lock conflict' if mqueue._lock_conflict(exc) else 'retryable' if mqueue._retryable(exc)
            else 'missing table' if 'run `mqueue init-db`' in problem
            else 'missing column' if 'lacks a column' in problem else 'other')


def error_of(conn, sql):
    with pytest.raises(Exception) as caught:
        query(conn, sql)
    assert mqueue._database_error(caught.value), repr(caught.value)
    return caught.value


def classified_errors(open_connection):
    """Raise real errors through the running test's database and a driver (open_connection(
    autocommit) opens a connection); how mqueue classifies each, and the errors themselves."""
    table = f't_errors_{uuid.uuid4().hex[:10]}'
    conn, holder = open_connection(True), open_connection(False)
    errors = {}
    try:
        query(conn, B.ledger_ddl(table))
        query(conn, f"INSERT INTO {table} (id, note) VALUES (1, 'held')")
        errors['missing table'] = error_of(conn, f'SELECT * FROM t_none_{uuid.uuid4().hex[:10]}')
        errors['missing column'] = error_of(conn, f'SELECT no_such_column FROM {table}')
        errors['syntax error'] = error_of(conn, 'SELEC 1')
        if B.dialect.name == 'sqlite':   # one writer at a time: the database is locked
            query(holder, 'BEGIN IMMEDIATE')
            query(conn, 'PRAGMA busy_timeout = 0')
            errors['lock wait timeout'] = error_of(conn, 'BEGIN IMMEDIATE')
        else:
            query(holder, f'SELECT note FROM {table} WHERE id = 1 FOR UPDATE')
            with cursor_of(conn) as cursor:
                B.lock_timeout(cursor, 1)
            errors['lock wait timeout'] = error_of(conn, f'SELECT note FROM {table} WHERE id = 1 FOR UPDATE')
            victim = open_connection(True)
            with cursor_of(victim) as cursor:
                victim_id = B.connection_id(cursor)
            B.kill(conn, victim_id)
            errors['lost connection'] = error_of(victim, 'SELECT 1')
            with contextlib.suppress(Exception):
                victim.close()
    finally:
        holder.rollback()
        holder.close()
        conn.close()
        drop_tables(table)
    return {situation: verdict(exc) for situation, exc in errors.items()}, errors


def test_every_drivers_errors_are_classified_by_what_they_carry(backend):
    verdicts, errors = classified_errors(lambda autocommit: connect(autocommit=autocommit))
    expected = {situation: v for situation, v in VERDICTS.items() if situation in errors}
    assert verdicts == expected, errors
    assert backend.dialect.name == 'sqlite' or len(verdicts) == len(VERDICTS)


CONNECTOR_CHILD = """
import sys
sys.path.insert(0, {root!r})
import _mysql_connector   # before anything loads the ssl or hashlib module (see the test below)
import test_mqueue
test_mqueue.check_mysql_connector(pure=False)
"""


def check_mysql_connector(pure):
    """mysql-connector-python in one mode: told apart as MySQL (pooled too), its errors classified."""
    global B
    import mysql.connector
    B = BACKENDS['mariadb-connector']
    options = dict(DB, collation='utf8mb4_general_ci', use_pure=pure)

    def open_connection(autocommit):
        return mysql.connector.connect(autocommit=autocommit, **options)
    conn = open_connection(False)
    pooled = mysql.connector.connect(pool_name=f'mqueue-{uuid.uuid4().hex[:8]}', pool_size=1, **options)
    try:
        assert type(conn).__name__ == ('MySQLConnection' if pure else 'CMySQLConnection')
        assert mqueue.Registry().dialect_of(conn) is mqueue.DIALECTS['mysql']
        assert mqueue.Registry().dialect_of(pooled) is mqueue.DIALECTS['mysql']
    finally:
        conn.close()
        pooled.close()
    verdicts, errors = classified_errors(open_connection)
    assert verdicts == VERDICTS, errors


@only('mariadb-connector')
@pytest.mark.parametrize('pure', [False, True], ids=['c-extension', 'pure-python'])
def test_mysql_connector_is_told_and_classified_in_both_modes(backend, pure):
    import mysql.connector
    if pure or mysql.connector.HAVE_CEXT:
        check_mysql_connector(pure)
        return
    # Its wheel brings its own libssl.so.3/libcrypto.so.3 (OpenSSL 3.2+) for the C extension; where
    # Python's hashlib or ssl loaded an older OpenSSL 3 first (pytest-xdist imports hashlib), the
    # extension cannot load and the driver quietly runs pure Python. A new process loads it first.
    child = subprocess.run([sys.executable, '-c', CONNECTOR_CHILD.format(root=str(ROOT))], capture_output=True,
                           text=True, timeout=60)
    assert child.returncode == 0, child.stdout + child.stderr


# Enqueue #########################################################################################


def test_enqueue_lives_and_dies_with_the_callers_transaction(db, reg):
    conn = connect()
    try:
        reg.enqueue(conn, 'app.mail', ['a@b.c'])
        conn.rollback()
        kept = reg.enqueue(conn, 'app.mail', {'to': 'a@b.c'})
        assert tasks_in(db, reg) == []          # not visible before the caller commits
        conn.commit()
    finally:
        conn.close()
    rows = tasks_in(db, reg)
    assert [r['id'] for r in rows] == [kept]     # (SQLite may give the rolled-back id again: it never existed)
    assert json.loads(rows[0]['args']) == {'to': 'a@b.c'}
    assert (rows[0]['name'], rows[0]['queue'], rows[0]['retries'], rows[0]['dead_at']) == \
        ('app.mail', 'default', 0, None)


@only('mariadb-pymysql', 'postgresql-psycopg')
def test_enqueue_returns_the_id_on_a_connection_whose_rows_are_dicts(db, reg):
    if B.dialect.name == 'postgresql':   # (as FastAPI applications often have them)
        import psycopg
        from psycopg.rows import dict_row
        conn = psycopg.connect('host=127.0.0.1 port=5432 user=postgres dbname=test', row_factory=dict_row)
    else:
        import pymysql
        conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user='root', database='test',
                               cursorclass=pymysql.cursors.DictCursor)
    try:
        plain = reg.enqueue(conn, 'app.mail', ['a@b.c'])                  # one statement, sent by enqueue
        later = reg.enqueue(conn, 'app.mail', ['d@e.f'], delay=60)        # through the statements' generator
        keyed = reg.enqueue(conn, 'app.mail', ['g@h.i'], unique='g')
        again = reg.enqueue(conn, 'app.mail', ['g@h.i'], unique='g')
        conn.commit()
    finally:
        conn.close()
    assert [r['id'] for r in tasks_in(db, reg)] == [plain, later, keyed]
    assert (again, again.created, keyed.created) == (keyed, False, True)


def test_enqueue_never_commits_or_opens_a_connection(db, reg):
    class Watched:
        def __init__(self, conn):
            self.conn, self.calls = conn, []

        def cursor(self):
            self.calls.append('cursor')
            return self.conn.cursor()

        def __getattr__(self, name):
            self.calls.append(name)
            return getattr(self.conn, name)
    conn = Watched(connect())
    reg.dialect = B.dialect       # told: a wrapped connection does not say which database it is
    reg.enqueue(conn, 'app.mail', [])
    assert conn.calls == ['cursor']
    conn.conn.rollback()
    conn.conn.close()
    assert tasks_in(db, reg) == []


def test_eta_delay_and_priority(db, reg):
    conn = connect()
    zone = {'mysql': "SET time_zone = '+05:00'", 'postgresql': "SET TIME ZONE 'Asia/Karachi'"}
    if B.dialect.name in zone:
        query(conn, zone[B.dialect.name])   # the session's zone (UTC+5) must not shift anything
    plus_two = dt.timezone(dt.timedelta(hours=2))
    eta = dt.datetime(2030, 1, 2, 12, 0, 0, 123456, tzinfo=plus_two)
    at = reg.enqueue(conn, 'x', [], eta=eta)
    later = reg.enqueue(conn, 'x', [], delay=dt.timedelta(hours=1))
    soon = reg.enqueue(conn, 'x', [], delay=2.5, priority=-5)
    conn.commit()
    conn.close()
    stored = {r['id']: r for r in tasks_in(db, reg)}
    assert stored[at]['eta'] == dt.datetime(2030, 1, 2, 10, 0, 0, 123456)   # UTC, naive in the column
    drift_later, drift_soon = seconds_until_eta(db, reg, later), seconds_until_eta(db, reg, soon)
    assert 3590 < drift_later <= 3600 and 0 < drift_soon <= 2.5
    assert stored[soon]['priority'] == -5


def test_claim_order_is_priority_then_eta_and_only_due_tasks(db, reg):
    order = []

    @reg.task(name='t')
    def t(label):
        order.append(label)
    conn = connect()
    now = dt.datetime.now(UTC)
    reg.enqueue(conn, 't', ['future'], delay=3600)
    reg.enqueue(conn, 't', ['old-low'], eta=now - dt.timedelta(hours=2), priority=5)
    reg.enqueue(conn, 't', ['new-high'], eta=now - dt.timedelta(minutes=1), priority=-1)
    reg.enqueue(conn, 't', ['old-normal'], eta=now - dt.timedelta(hours=1))
    reg.enqueue(conn, 't', ['new-normal'], eta=now - dt.timedelta(seconds=1))
    conn.commit()
    conn.close()
    assert worker(reg).run(burst=True) == 4
    assert order == ['new-high', 'old-normal', 'new-normal', 'old-low']
    assert [json.loads(r['args']) for r in tasks_in(db, reg)] == [['future']]


def test_due_is_decided_by_the_database_clock(db, reg):
    ran = []
    reg.task(name='t')(lambda: ran.append(1))
    # A row one second behind the database clock is due; one a minute ahead is not, whatever the
    # worker's own clock says (the claim compares with the database's now in SQL).
    query(db, f"INSERT INTO {reg.table} (args, eta, name, queue) VALUES "
              f"('[]', {B.at(-1)}, 't', 'default'), ('[]', {B.at(60)}, 't', 'default')")
    assert worker(reg).run(burst=True) == 1 and ran == [1]


def big_text(n):
    return 'x' * n


@pytest.mark.parametrize('call, error', [
    (lambda r, c: r.enqueue(c, 'x', [math.nan]), 'JSON'),
    (lambda r, c: r.enqueue(c, 'x', {'n': float('inf')}), 'JSON'),
    (lambda r, c: r.enqueue(c, 'x', [object()]), 'JSON'),
    (lambda r, c: r.enqueue(c, 'x', {1: 'a'}), 'string keys'),
    (lambda r, c: r.enqueue(c, 'x', 'abc'), 'list/tuple'),
    (lambda r, c: r.enqueue(c, 'n' * 129, []), '129 characters; the name column holds 128'),
    (lambda r, c: r.enqueue(c, 'x', [], queue='q' * 33), '33 characters; the queue column holds 32'),
    (lambda r, c: r.enqueue(c, '', []), 'non-empty'),
    (lambda r, c: r.enqueue(c, 'x', [big_text(mqueue.ARGS_MAX_BYTES)]), 'the args column holds'),
    (lambda r, c: r.enqueue(c, 'x', [], dely=3), 'unexpected keyword'),
    (lambda r, c: r.enqueue(c, 'x', [], eta=dt.datetime(2030, 1, 1)), 'timezone-aware'),
    (lambda r, c: r.enqueue(c, 'x', [], eta='2030-01-01'), 'datetime'),
    (lambda r, c: r.enqueue(c, 'x', [], delay=-1), 'delay must be a number of seconds from 0'),
    (lambda r, c: r.enqueue(c, 'x', [], delay=1, eta=dt.datetime.now(UTC)), 'not both'),
    (lambda r, c: r.enqueue(c, 'x', [], priority=40000), 'priority'),
    (lambda r, c: r.enqueue(c, 'x', [], priority=1.5), 'priority'),
])
def test_bad_input_to_enqueue_raises_and_writes_nothing(db, reg, call, error):
    conn = connect()
    if B.dialect.name == 'mysql':
        query(conn, "SET SESSION sql_mode = ''")   # no strict mode: the server would truncate
    with pytest.raises((TypeError, ValueError), match=error):
        call(reg, conn)
    conn.commit()
    conn.close()
    assert tasks_in(db, reg) == []


def test_enqueue_many_writes_all_or_nothing_in_the_callers_transaction(db, reg, monkeypatch):
    monkeypatch.setattr(mqueue, 'ENQUEUE_MANY_ROWS', 7)      # several statements for one call
    conn = connect()
    with pytest.raises(ValueError, match='JSON'):
        reg.enqueue_many(conn, 'x', [[1], [2], [math.nan]])  # checked before anything is written
    assert reg.enqueue_many(conn, 'x', [[i] for i in range(20)] + [{'k': 'v'}], priority=3, queue='q') == 21
    assert tasks_in(db, reg) == []                           # not before the caller commits
    conn.rollback()
    assert reg.enqueue_many(conn, 'x', ([i] for i in range(30)), delay=3600) == 30
    assert reg.enqueue_many(conn, 'x', []) == 0
    conn.commit()
    conn.close()
    rows = tasks_in(db, reg)
    assert [json.loads(r['args']) for r in rows] == [[i] for i in range(30)]
    assert {(r['queue'], r['priority'], r['eta'] > dt.datetime.now(UTC).replace(tzinfo=None)) for r in rows} == {('default', 0, True)}


def test_task_enqueue_checks_the_signature_and_stores_keywords_in_the_seed_form(db, reg):
    @reg.task
    def mail(receiver, subject, body='', *, cc=None):
        pass
    assert mail.name == f'{__name__}.test_task_enqueue_checks_the_signature_and_stores_keywords_in_the_seed_form.<locals>.mail'
    conn = connect()
    mail.enqueue_with(('a@b.c', 'hi'), connection=conn)
    mail.enqueue_with(('a@b.c',), {'subject': 'hi', 'cc': 'x'}, connection=conn)
    with pytest.raises(TypeError, match='missing a required argument'):
        mail.enqueue_with((), {'receiver': 'a'}, connection=conn)
    with pytest.raises(TypeError, match='unexpected keyword'):
        mail.enqueue_with(('a', 'b'), {'bcc': 1}, connection=conn)
    conn.commit()
    conn.close()
    assert [json.loads(r['args']) for r in tasks_in(db, reg)] == [
        ['a@b.c', 'hi'], {'receiver': 'a@b.c', 'subject': 'hi', 'cc': 'x'}]
    assert mail('direct', 'call') is None        # still an ordinary function


def test_task_enqueue_uses_the_ambient_connection(db, reg):
    @reg.task(name='child')
    def child(n):
        pass

    @reg.task(name='parent', backoff=0, retries=0)
    def parent(fail):
        child.enqueue(1)                         # inside a task: the worker's own transaction
        if fail:
            raise RuntimeError('parent failed')
    with pytest.raises(mqueue.NoConnectionError, match='init'):
        child.enqueue(0)
    with pytest.raises(mqueue.NotInTaskError):
        mqueue.current()
    conn = connect()
    reg.init('default', connection=lambda: conn)   # the seed's init(queue), plus a provider
    parent.enqueue(False)
    parent.enqueue(True)
    conn.commit()
    conn.close()
    reg.connection = None
    assert worker(reg, queues=['default']).run_once() == 1    # parent(False) enqueues a child
    assert worker(reg, queues=['default']).run_once() == 1    # parent(True) fails: its child is gone
    names = sorted(r['name'] for r in tasks_in(db, reg))
    assert names == ['child', 'parent'] and [r for r in tasks_in(db, reg) if r['name'] == 'parent'][0]['dead_at']


def test_registry_refuses_a_second_function_under_one_name(reg):
    reg.task(name='same')(lambda: 1)
    with pytest.raises(ValueError, match='already registered'):
        reg.task(name='same')(lambda: 2)


# Crons ###########################################################################################


CRON_CHILD = """
import sys, json
sys.path.insert(0, {root!r})
import test_mqueue
sys.exit(test_mqueue.cron_child(json.loads(sys.argv[1])))
"""


def cron_child(spec):
    """Several independent workers (each schedules) in one process, until a stop file appears."""
    global B
    B = BACKENDS[spec['backend']]
    reg = mqueue.Registry(table=spec['table'], cron_table=spec['cron_table'])

    @reg.cron('* * * * * *', name='tick', overlap=True)
    def tick():
        context = mqueue.current()
        with cursor_of(context.connection) as cursor:
            cursor.execute(f'INSERT INTO {spec["ledger"]} (task_id, note) VALUES (%s, %s)',
                           (context.id, context.eta.replace(tzinfo=None).isoformat()))
    workers = [mqueue.Worker(connect, registry=reg, poll_interval=0.05) for _ in range(spec['workers'])]
    threads = [threading.Thread(target=w.run) for w in workers]
    for thread in threads:
        thread.start()
    stop = Path(spec['stop'])
    while not stop.exists():
        time.sleep(0.02)
    for w in workers:
        w.stop()
    for thread in threads:
        thread.join()
    return 0


def test_eight_workers_in_two_processes_enqueue_each_fire_exactly_once(db, reg, ledger, tmp_path):
    spec = dict(backend=B.name, table=reg.table, cron_table=reg.cron_table, ledger=ledger, workers=4,
                stop=str(tmp_path / 'stop'))
    children = [subprocess.Popen([sys.executable, '-c', CRON_CHILD.format(root=str(ROOT)), json.dumps(spec)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        wait_for(lambda: query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] >= 5, timeout=30, interval=0.1)
    finally:
        (tmp_path / 'stop').touch()
        outputs = [child.communicate(timeout=30)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    ran = [dt.datetime.fromisoformat(note) for note, in query(db, f'SELECT note FROM {ledger}')]
    waiting = [row['eta'] for row in tasks_in(db, reg)]
    fires = sorted(ran + waiting)
    assert len(fires) == len(set(fires)) >= 5                      # never two tasks for one fire
    assert all(f.microsecond == 0 for f in fires)
    assert [(b - a).total_seconds() for a, b in zip(fires, fires[1:])] == [1.0] * (len(fires) - 1)   # none missed
    (last, task_id), = query(db, f'SELECT last, task_id FROM {reg.cron_table}')
    assert as_datetime(last) == fires[-1]


def move_cron_back(db, reg, seconds):
    query(db, f"UPDATE {reg.cron_table} SET last = {B.shift('last', -seconds)}")


def test_a_missed_day_is_caught_up_with_one_task(db, reg):
    ran = []
    reg.cron('0 * * * *', name='hourly')(lambda: ran.append(1))
    assert worker(reg).run(burst=True) == 0           # first sight: creates the row, fires from now on
    move_cron_back(db, reg, 86400)
    assert worker(reg).run(burst=True) == 1 and ran == [1]
    (last, now), = query(db, f'SELECT last, {B.now} FROM {reg.cron_table}')
    last, now = as_datetime(last), as_datetime(now).replace(microsecond=0)
    assert last == now.replace(minute=0, second=0) or now.minute == 0   # the newest fire covered


def test_no_pile_up_unless_overlap_is_allowed(db, reg):
    reg.cron('@hourly', name='single')(lambda: None)
    reg.cron('@hourly', name='overlapping', overlap=True)(lambda: None)
    scheduler = worker(reg, queues=['nothing-runs-here'])       # serves no task: only schedules
    scheduler.queues = None
    scheduler.scheduler.run_due()                               # creates both rows

    def fire():
        move_cron_back(db, reg, 7200)
        scheduler.scheduler._due.clear()
        scheduler.scheduler.run_due()
        return sorted(r['name'] for r in tasks_in(db, reg))
    assert fire() == ['overlapping', 'single']
    assert fire() == ['overlapping', 'overlapping', 'single']   # single's first task is still pending
    assert worker(reg, crons=False).run(burst=True) == 3
    assert fire() == ['overlapping', 'single']


def test_a_failing_cron_follows_the_retry_rules_and_keeps_firing(db, reg):
    attempts = []

    @reg.cron('@hourly', name='failing', retries=1, backoff=0)
    def failing():
        attempts.append(mqueue.current().retries)
        raise RuntimeError('cron failed')
    assert worker(reg).run(burst=True) == 0
    move_cron_back(db, reg, 7200)
    assert worker(reg).run(burst=True) == 2 and attempts == [0, 1]
    dead, = tasks_in(db, reg)
    assert dead['dead_at'] is not None
    move_cron_back(db, reg, 7200)
    assert worker(reg).run(burst=True) == 2                      # a new fire, its own attempts
    assert len(tasks_in(db, reg)) == 2 and attempts == [0, 1, 0, 1]


def test_workers_with_skewed_clocks_schedule_by_the_database_clock(db, reg, ledger, caplog):
    caplog.set_level(logging.DEBUG, logger='mqueue')
    reg.cron('* * * * * *', name='tick', overlap=True)(lambda: write_ledger(ledger))
    workers = [worker(reg, poll_interval=0.05) for _ in range(2)]
    workers[0].scheduler.clock = lambda: time.time() + 3600     # an hour fast
    workers[1].scheduler.clock = lambda: time.time() - 3600     # an hour slow
    threads = [run_in_thread(w) for w in workers]
    try:
        wait_for(lambda: query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] >= 3, timeout=20, interval=0.05)
    finally:
        for w in workers:
            w.stop()
        for thread in threads:
            thread.join(10)
    runs = query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0]
    (created, now), = query(db, f'SELECT MIN(last), {B.now} FROM {reg.cron_table}')
    created, now = as_datetime(created), as_datetime(now)
    assert abs((now - created).total_seconds()) < 10               # fires follow the database clock
    checks = sum('cron tick: checked' in r.getMessage() for r in caplog.records)
    fires = runs + len(tasks_in(db, reg))
    assert fires >= 3 and checks <= 2 * (fires + 3)               # about one check per worker per fire


def test_undeclared_cron_rows_are_left_alone_and_reported(db, reg, caplog):
    query(db, f"INSERT INTO {reg.cron_table} (queue, name, last) VALUES ('default', 'retired', {B.now})")
    reg.cron('@hourly', name='current')(lambda: None)
    worker(reg).run(burst=True)
    assert any('cron row retired' in r.getMessage() and 'left alone' in r.getMessage() for r in caplog.records)
    assert sorted(name for name, in query(db, f'SELECT name FROM {reg.cron_table}')) == ['current', 'retired']


def test_a_worker_that_does_not_serve_the_queue_of_its_queueless_crons_says_so(db, reg, caplog):
    reg.cron('@hourly', name='bare')(lambda: None)
    reg.cron('@hourly', name='placed', queue='other')(lambda: None)
    worker(reg, queues=['test-queue']).run(burst=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and 'have no queue' in r.getMessage()]
    assert warnings == ["crons bare have no queue, so they belong to the default queue 'default', which this worker "
                        "does not serve: it will not schedule them. Call mqueue.init('test-queue') before starting "
                        "it, or declare @cron(..., queue=...)"]
    assert query(db, f'SELECT COUNT(*) FROM {reg.cron_table}')[0][0] == 0
    caplog.clear()
    reg.init('test-queue')                   # the port docs/upgrading.md gives: the queue start() was given
    worker(reg, queues=['test-queue']).run(burst=True)
    assert not [r for r in caplog.records if 'have no queue' in r.getMessage()]
    assert query(db, f'SELECT queue, name FROM {reg.cron_table}') == (('test-queue', 'bare'),)


def test_cli_crons_lists_expression_zone_last_and_next_fire(db, reg, tmp_path, monkeypatch, capsys):
    package = f'crons_{uuid.uuid4().hex[:8]}'
    (tmp_path / package).mkdir()
    (tmp_path / package / '__init__.py').write_text(
        'import mqueue\n\n@mqueue.cron("0 9 * * 1-5", name="report", tz="Europe/Berlin")\ndef report():\n    pass\n')
    query(db, f"INSERT INTO {reg.cron_table} (queue, name, last) VALUES ('default', 'report', '2026-11-27 08:00:00'),"
              f" ('default', 'gone', '2026-01-01 00:00:00')")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(mqueue.default_registry.tasks), dict(mqueue.default_registry.crons)
    table, cron_table = mqueue.default_registry.table, mqueue.default_registry.cron_table
    try:
        assert mqueue.main(['crons', '--db', B.url, '--tasks', package, '--table', reg.table,
                            '--cron-table', reg.cron_table]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert mqueue.main(['crons', '--db', B.url, '--tasks', package, '--table', reg.table,
                            '--cron-table', reg.cron_table, '--json']) == 0
        listed = json.loads(capsys.readouterr().out)
    finally:
        mqueue.default_registry.tasks, mqueue.default_registry.crons = before
        mqueue.default_registry.table, mqueue.default_registry.cron_table = table, cron_table
    assert [(c['name'], c['expression'], c['zone'], c['last'], c['next']) for c in listed] == [
        ('report', '0 9 * * 1-5', 'Europe/Berlin', '2026-11-27T08:00:00+00:00', '2026-11-30T08:00:00+00:00'),
        ('gone', None, None, '2026-01-01T00:00:00+00:00', None)]
    assert lines[0].split() == ['NAME', 'QUEUE', 'EXPRESSION', 'ZONE', 'LAST', 'FIRE', '(UTC)', 'NEXT', 'FIRE', '(UTC)']
    assert lines[1].split() == ['report', 'default', '0', '9', '*', '*', '1-5', 'Europe/Berlin',
                                '2026-11-27', '08:00:00', '2026-11-30', '08:00:00']
    assert lines[2].split() == ['gone', 'default', '(not', 'declared)', '2026-01-01', '00:00:00']


# Worker: success and failure #####################################################################


def test_a_tasks_writes_and_its_completion_commit_together(db, reg, ledger):
    started, proceed = threading.Event(), threading.Event()

    @reg.task(name='w')
    def w():
        write_ledger(ledger)
        started.set()
        assert proceed.wait(10)
    task_id = enqueued(reg, 'w', [])
    thread = threading.Thread(target=worker(reg).run_once)
    thread.start()
    assert started.wait(10)
    # mid-task, from outside: neither the task's write nor its completion is visible
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0
    assert [r['id'] for r in tasks_in(db, reg)] == [task_id]
    proceed.set()
    thread.join(10)
    assert query(db, f'SELECT task_id FROM {ledger}') == ((task_id,),)
    assert tasks_in(db, reg) == []


def test_a_failed_attempt_rolls_back_its_writes_but_records_the_retry(db, reg, ledger):
    inside, proceed, bookkeeping, finish = (threading.Event() for _ in range(4))

    @reg.task(name='f', retries=1, backoff=30)
    def f():
        write_ledger(ledger)
        inside.set()
        assert proceed.wait(10)
        raise ValueError('no such mailbox')
    task_id = enqueued(reg, 'f', [])
    first = worker(reg, lease=0.05)
    record_failure = first._retry_or_bury

    def paused_record_failure(*args):    # hold the worker between its rollback and its bookkeeping
        bookkeeping.set()
        assert finish.wait(10)
        return record_failure(*args)
    first._retry_or_bury = paused_record_failure
    thread = threading.Thread(target=first.run_once)
    thread.start()
    try:
        assert inside.wait(10)
        time.sleep(0.1)   # let the short lease end: only the row lock now keeps others away
        assert_no_other_worker_can_claim(reg)        # another worker cannot take it mid-attempt
        proceed.set()
        assert bookkeeping.wait(10)
        assert_no_other_worker_can_claim(reg)        # nor between the rollback and the bookkeeping
        assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0   # the attempt's write is gone
    finally:
        proceed.set()
        finish.set()
        thread.join(10)
    row, = tasks_in(db, reg)
    assert row['retries'] == 1 and row['dead_at'] is None
    assert row['last_error'].startswith('ValueError: no such mailbox\nTraceback')
    assert 'raise ValueError' in row['last_error']
    wait_s = seconds_until_eta(db, reg)
    assert 14 < wait_s <= 30                     # backoff 30 s, jittered within [15, 30]
    assert task_id == row['id']


def test_after_its_retries_a_task_is_dead_until_brought_back(db, reg, ledger):
    attempts = []

    @reg.task(name='flaky', retries=2, backoff=0)
    def flaky():
        attempts.append(mqueue.current().retries)
        write_ledger(ledger)
        if len(attempts) <= 3:
            raise RuntimeError(f'attempt {len(attempts)}')
    conn = connect()
    task_id = reg.enqueue(conn, 'flaky', [])
    conn.commit()
    assert worker(reg).run(burst=True) == 3
    assert attempts == [0, 1, 2]
    row, = tasks_in(db, reg)
    assert row['dead_at'] is not None and row['retries'] == 3 and 'RuntimeError: attempt 3' in row['last_error']
    assert worker(reg).run(burst=True) == 0      # dead: never claimed
    assert reg.retry_dead(conn, queue='other') == 0
    assert reg.retry_dead(conn, [task_id]) == 1
    conn.commit()
    conn.close()
    assert worker(reg).run(burst=True) == 1
    assert attempts == [0, 1, 2, 0] and tasks_in(db, reg) == []
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 1


@pytest.mark.parametrize('name, args, error', [
    ('nobody.registered', '[]', 'UnknownTask'),
    ('os.system', '["touch /tmp/mqueue-pwned"]', 'UnknownTask'),
    ('good', '{"x": ', 'not valid JSON'),
    ('good', '"text"', 'JSON list or object'),
    ('good', '[1, 2, 3]', 'cannot take these arguments'),
    ('good', '{"y": 1}', 'cannot take these arguments'),
])
def test_a_bad_row_goes_dead_at_once_and_the_worker_carries_on(db, reg, name, args, error):
    ran = []
    reg.task(name='good')(lambda x: ran.append(x))
    query(db, f"INSERT INTO {reg.table} (args, eta, name, queue) VALUES (%s, {B.now}, %s, 'default')",
          (args, name))
    enqueued(reg, 'good', [7])
    dead = []
    hooks = {'task_dead': lambda context, error, **info: dead.append((context.name, error))}
    assert worker(reg, hooks=hooks).run(burst=True) == 2
    assert ran == [7]
    row, = tasks_in(db, reg)
    assert row['dead_at'] is not None and error in row['last_error'] and row['retries'] == 0
    assert dead == [(name, row['last_error'])]            # reported like any task that dies
    assert not os.path.exists('/tmp/mqueue-pwned')


def test_a_task_takes_its_savepoint_when_it_first_reads_its_connection(db, reg, ledger):
    """One batch of five: tasks that never read current().connection send no savepoint (there is
    nothing of theirs to roll back), and one of them failing is recorded all the same; a task that
    reads it takes its savepoint first, so its writes, and what it enqueued, roll back alone."""
    sent = []

    @reg.task(name='child')
    def child():
        pass

    @reg.task(name='t', retries=1, backoff=30)
    def t(label):
        if label.startswith('writer'):
            write_ledger(ledger, label)
            child.enqueue()   # (through the ambient connection: the same savepoint)
        if label.endswith('fails'):
            raise ValueError(label)
    labels = ['plain', 'writer', 'plain fails', 'writer fails', 'plain again']
    reg.dialect = B.dialect   # (the enqueue inside a task: the recording wrapper hides the driver)
    with committed() as conn:
        ids = dict(zip(labels, (reg.enqueue(conn, 't', [label]) for label in labels)))
    assert recording_worker(reg, sent, batch=5, queues=['default']).run_once() == 5
    savepoints = [sql for sql in sent if 'SAVEPOINT' in sql]
    assert savepoints == ['SAVEPOINT mqueue_1', 'SAVEPOINT mqueue_3', 'ROLLBACK TO SAVEPOINT mqueue_3',
                          'RELEASE SAVEPOINT mqueue_1']
    assert [note for note, in query(db, f'SELECT note FROM {ledger}')] == ['writer']
    rows = {r['id']: r for r in tasks_in(db, reg)}
    assert sorted(rows) == sorted([ids['plain fails'], ids['writer fails'], *(i for i in rows if rows[i]['name'] == 'child')])
    assert [r['name'] for r in rows.values()].count('child') == 1    # the failed writer's child is gone
    for label in ('plain fails', 'writer fails'):
        assert rows[ids[label]]['retries'] == 1 and rows[ids[label]]['last_error'].startswith(f'ValueError: {label}')


def test_a_task_context_read_as_a_tuple_gives_the_connection_and_takes_the_savepoint(db, reg, ledger):
    """TaskContext is a named tuple: indexing, unpacking and _asdict() give the connection as
    .connection does, and take the savepoint first, so a failed attempt's writes roll back."""
    seen = []

    @reg.task(name='t', retries=1, backoff=30)
    def t(how):
        context = mqueue.current()
        if how == 'index':
            conn = context[5]
        elif how == 'unpack':
            _, _, _, _, _, conn, _ = context
        else:
            conn = context._asdict()['connection']
        seen.append(conn)
        with cursor_of(conn) as cursor:
            cursor.execute(f'INSERT INTO {ledger} (task_id, note) VALUES (%s, %s)', (context.id, how))
        raise ValueError(how)
    with committed() as conn:
        for how in ('index', 'unpack', 'dict'):
            reg.enqueue(conn, 't', [how])
    assert worker(reg, batch=3).run_once() == 3
    assert len(seen) == 3 and all(hasattr(conn, 'cursor') and not isinstance(conn, mqueue._Savepoint) for conn in seen)
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0
    assert sorted(r['retries'] for r in tasks_in(db, reg)) == [1, 1, 1]


@pytest.mark.parametrize('how', ['open connection', 'transaction hook'])
def test_where_a_tasks_connection_reaches_it_otherwise_every_task_takes_its_savepoint(db, reg, ledger, how):
    """A worker given an open connection (its caller may hand it to tasks too) or a transaction
    hook (an ORM session does): no telling whether a task uses it, so each takes its savepoint
    before it starts, and a failing task that wrote without reading current().connection still
    loses its writes."""
    sent = []
    shared = RecordingConnection(connect(), sent)

    @reg.task(name='t', retries=1, backoff=30)
    def t(fail):
        with cursor_of(shared) as cursor:   # not through current()
            cursor.execute(f'INSERT INTO {ledger} (task_id, note) VALUES (%s, %s)', (0, str(fail)))
        if fail:
            raise ValueError('no')
    with committed() as conn:
        reg.enqueue(conn, 't', [False])
        failing = reg.enqueue(conn, 't', [True])
    if how == 'open connection':
        w = mqueue.Worker(shared, registry=reg, batch=2, crons=False)
    else:
        @contextlib.contextmanager
        def transaction():
            try:
                yield shared
            except BaseException:
                shared.rollback()
                raise
            shared.commit()
        w = mqueue.Worker(None, registry=reg, batch=2, crons=False, hooks={'transaction': transaction})
    w.dialect = B.dialect   # (the recording wrapper hides the driver that tells it)
    try:
        assert w.run_once() == 2
    finally:
        shared.close()
    assert [sql for sql in sent if 'SAVEPOINT' in sql] == ['SAVEPOINT mqueue_0', 'SAVEPOINT mqueue_1',
                                                             'ROLLBACK TO SAVEPOINT mqueue_1', 'RELEASE SAVEPOINT mqueue_0']
    assert [note for note, in query(db, f'SELECT note FROM {ledger}')] == ['False']
    row, = tasks_in(db, reg)
    assert row['id'] == failing and row['retries'] == 1


def test_a_task_that_ends_the_transaction_after_tasks_that_never_read_it_is_caught(db, reg, ledger):
    """The check that the batch's transaction survived its tasks releases the first savepoint
    taken, whichever task took it; only a task that had the connection can have ended it, so one
    alone is named, and the others go back uncounted."""
    @reg.task(name='plain')
    def plain():
        pass

    @reg.task(name='meddler', retries=1, backoff=0)
    def meddler():
        write_ledger(ledger, 'meddler')
        mqueue.current().connection.rollback()
    with committed() as conn:
        plain_id, meddler_id, later_id = (reg.enqueue(conn, name, []) for name in ('plain', 'meddler', 'plain'))
    assert worker(reg, batch=3).run_once() == 3
    rows = {r['id']: r for r in tasks_in(db, reg)}
    assert sorted(rows) == sorted([plain_id, meddler_id, later_id])
    assert rows[meddler_id]['retries'] == 1
    assert rows[meddler_id]['last_error'].startswith('TransactionLost: meddler() returned, but')
    for task_id in (plain_id, later_id):
        assert rows[task_id]['retries'] == 0 and rows[task_id]['last_error'] is None
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0


@pytest.mark.parametrize('reading', [False, True], ids=['no-op', 'reading its connection'])
def test_a_batch_sends_its_bookkeeping_once_and_a_savepoint_per_task_that_reads_its_connection(db, monkeypatch,
                                                                                               reading):
    """bench/statements.py's count, reduced: what a worker sends for 60 no-op tasks at batch 20,
    and for 60 that read their connection (docs/design.md gives the figures per database)."""
    monkeypatch.setattr(mqueue, 'COUNTS_EVERY', 1e9)   # (the throughput counts: written as it stops only)
    sys.path.insert(0, str(ROOT / 'bench'))
    import statements
    counts, _, _ = statements.drain(B.dialect.name, B.url, 60, 20, profile=False, reading=reading)
    sent = dict(counts.sent)
    assert sent.pop('savepoint', 0) == (60 if reading else 0) and sent.pop('next priority', 0) <= 3
    assert sent.pop('rescue look', 0) <= 3   # about once a second
    assert sent.pop('claimed index lookup', 0) == 1   # once per worker
    # the throughput counts, in a transaction of their own as the worker stops: a look for their
    # table, the purge, a write per minute
    assert sent.pop('counts') in (3, 4)
    batches = {'claim': 4, 'lease': 3, 'lock': 3, 'complete': 3, 'commit': 8}
    if reading:
        batches['release savepoint'] = 3   # (the check that a task did not end the batch's transaction)
    if B.dialect.begin:
        batches['begin'] = 8   # SQLite: BEGIN IMMEDIATE opens each transaction
    if B.dialect.lazy_commit:
        batches['lazy commit'] = 5   # PostgreSQL: each claim's commit (and the counts') does not wait for the disk
    if B.dialect.synchronous:
        batches['lazy commit'] = 7   # SQLite: the same, by a setting switched before each transaction (the
                                     # counts' follows a claim's: the setting is already right)
    assert sent == batches   # the last claim finds nothing; its transaction commits too


def test_bench_reduced_run_drains_every_task_exactly_once(db):
    """bench/bench.py, reduced: its floors, mqueue's drains (one priority and eight) and enqueues
    on this database, each checked to run every task exactly once (a drain that loses or repeats
    one raises)."""
    sys.path.insert(0, str(ROOT / 'bench'))
    import bench
    database = bench.Database(B.dialect.name, B.url)
    try:
        rates = [bench.drain_rate(database, 300, bench.floor_drain, 1, 10),   # a floor is one connection
                 bench.drain_rate(database, 300, bench.mqueue_drain, 2, 20),
                 bench.drain_rate(database, 300, bench.mqueue_drain, 2, 20, priorities=8),
                 bench.drain_rate(database, 300, bench.mqueue_drain, 2, 20, name='noop kept'),
                 *bench.one_row_commits(database, 30, block=10).values(), bench.executemany_rows(database, 200),
                 bench.mqueue_enqueue_many(database, 2000)]
        assert all(rate > 0 for rate in rates)
    finally:
        drop_tables(database.table, database.table + '_cron', database.registry.result_table,
                    database.registry.counts_table)


def test_a_task_row_tells_when_it_was_enqueued_and_started_who_runs_it_and_its_failed_attempts(
        db, reg, monkeypatch):
    """0.4's columns: enqueued_at (enqueue and enqueue_many), started_at (the first attempt's claim,
    kept across retries), worker (host:pid:thread while claimed, cleared after), errors (each
    failed attempt's, oldest first, the last ERRORS_KEPT)."""
    monkeypatch.setattr(mqueue, 'ERRORS_KEPT', 2)
    seen = []

    @reg.task(name='flaky', retries=2, backoff=0)
    def flaky():
        with committed() as other:   # what the worker committed with its claim, as anyone reads it
            seen.append(dict(zip(('started_at', 'claimed_at', 'worker'), query(other, B.sql(
                f'SELECT started_at, claimed_at, worker FROM {reg.table} WHERE id = %s'), (mqueue.current().id,))[0])))
        raise ValueError(f'attempt {mqueue.current().retries + 1}')
    reg.task(name='noop')(lambda: None)
    task_id = enqueued(reg, 'flaky')
    with committed() as conn:
        reg.enqueue_many(conn, 'noop', [[], []])
    rows = tasks_in(db, reg)
    assert all(row['enqueued_at'] is not None and row['started_at'] is None and row['worker'] is None for row in rows)
    enqueued_at = as_datetime(rows[0]['enqueued_at'])
    w = mqueue.Worker(connect, registry=reg, poll_interval=0.01, batch=1, crons=False)
    assert w.run(burst=True) == 5
    (row,) = tasks_in(db, reg)
    assert row['id'] == task_id and row['dead_at'] is not None and row['worker'] is None and row['claimed_at'] is None
    host = socket.gethostname() + (f'#{os.stat("/proc/self/ns/pid").st_ino}' if os.path.exists('/proc/self/ns/pid')
                                   else '')   # (on Linux its pid namespace too)
    worker = f'{host}:{os.getpid()}:{threading.current_thread().name}'
    assert [attempt['worker'] for attempt in seen] == [worker] * 3
    assert [as_datetime(attempt['started_at']) for attempt in seen] == [as_datetime(seen[0]['claimed_at'])] * 3
    assert enqueued_at <= as_datetime(seen[0]['started_at']) < as_datetime(seen[2]['claimed_at'])
    errors = json.loads(row['errors'])
    assert [(e['attempt'], e['type'], e['error'].splitlines()[0]) for e in errors] == [
        (2, 'builtins.ValueError', 'ValueError: attempt 2'), (3, 'builtins.ValueError', 'ValueError: attempt 3')]
    assert errors[-1]['error'] == row['last_error'] and 'Traceback' in row['last_error']
    assert all(mqueue._utc(e['at']) <= dt.datetime.now(UTC) for e in errors)


# Results #########################################################################################


def test_a_kept_result_says_what_became_of_the_task_and_an_unkept_one_is_unknown(db, reg, ledger):
    """result(): pending, then succeeded with its value, attempts, times and the earlier attempt's
    error; a task keeping no result is unknown once done; a dead one is dead with its errors, from
    its row and, once that is purged, from the results table; a value that is not JSON fails the
    attempt."""
    @reg.task(name='add', result=60, retries=1, backoff=0)
    def add(a, b):
        query(mqueue.current().connection, B.sql(f'INSERT INTO {ledger} (task_id, note) VALUES (%s, %s)'),
              (mqueue.current().id, 'add'))
        if mqueue.current().retries == 0:
            raise ConnectionError('try again')
        return {'sum': a + b, 'parts': [a, b]}
    reg.task(name='plain')(lambda: 42)
    reg.task(name='odd', result=60, retries=0)(lambda: {1, 2})   # a set: not JSON
    ids = {name: enqueued(reg, name, args) for name, args in (('add', [2, 3]), ('plain', []), ('odd', []))}
    with committed() as conn:
        assert reg.result(conn, ids['add'])[:5] == (ids['add'], 'pending', None, [], 0)
        assert reg.result(conn, 10 ** 9).status == 'unknown'
    assert worker(reg).run(burst=True) == 4
    with committed() as conn:
        done, plain, odd = (reg.result(conn, ids[name]) for name in ('add', 'plain', 'odd'))
    assert (done.status, done.value, done.attempts) == ('succeeded', {'sum': 5, 'parts': [2, 3]}, 2)
    assert [(e['attempt'], e['type']) for e in done.errors] == [(1, 'builtins.ConnectionError')]
    assert done.error.startswith('ConnectionError: try again')
    assert done.enqueued_at <= done.started_at <= done.finished_at <= dt.datetime.now(UTC) + dt.timedelta(seconds=5)
    assert query(db, f'SELECT COUNT(*) FROM {ledger}') == ((1,),)     # the failed attempt's write rolled back
    assert plain.status == 'unknown'                                  # done, nothing kept
    assert (odd.status, odd.attempts, odd.value) == ('dead', 1, None)
    assert odd.error.startswith("TypeError: odd() returned a value that cannot be kept as JSON")
    assert reg.purge_dead(db, 0) == 1
    if B.dialect.name == 'sqlite':
        db.commit() if db.in_transaction else None
    with committed() as conn:
        gone = reg.result(conn, ids['odd'])
    assert (gone.status, gone.attempts, gone.errors) == ('dead', 1, odd.errors) and gone.finished_at


def test_a_batch_keeps_each_tasks_own_result_and_expiry(db, reg):
    """The results of one batch are written by one statement: each task's value, and its own time
    to keep it."""
    reg.task(name='echo', result=60)(lambda value: value)
    reg.task(name='long', result=3600)(lambda: None)
    values = [None, 1, 'x', {'a': [1, None]}]
    ids = [enqueued(reg, 'echo', [value]) for value in values] + [enqueued(reg, 'long')]
    assert worker(reg, batch=5).run(burst=True) == 5
    with committed() as conn:
        results = [reg.result(conn, task_id) for task_id in ids]
    assert [(r.status, r.value) for r in results] == [('succeeded', value) for value in [*values, None]]
    kept = {row[0]: (as_datetime(row[2]) - as_datetime(row[1])).total_seconds()
            for row in query(db, f'SELECT id, finished_at, expires_at FROM {reg.result_table}')}
    assert sorted(kept) == sorted(ids)
    assert all(55 <= kept[task_id] <= 65 for task_id in ids[:4]) and 3595 <= kept[ids[4]] <= 3605, kept


def test_a_result_never_exists_for_a_rolled_back_attempt(db, reg, ledger, tmp_path):
    """The worker is killed after the task returned and its result was written, before the
    commit: no result, no write of the task's, the task back in the queue; run again, it keeps
    one result, of its second attempt."""
    @reg.task(name='keep', result=60)
    def keep():
        query(mqueue.current().connection, B.sql(f'INSERT INTO {ledger} (task_id, note) VALUES (%s, %s)'),
              (mqueue.current().id, 'kept'))
        return mqueue.current().retries + 1
    task_id = enqueued(reg, 'keep')
    child = subprocess.run([sys.executable, '-c', textwrap.dedent(f"""
        import contextlib, os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import mqueue
        reg = mqueue.Registry(table={reg.table!r}, cron_table={reg.cron_table!r})
        returned = []

        @reg.task(name='keep', result=60)
        def keep():
            mqueue.current().connection.cursor().execute(
                {B.sql(f'INSERT INTO {ledger} (task_id, note) VALUES (%s, %s)')!r}, (mqueue.current().id, 'killed'))
            returned.append(1)
            return 'never kept'
        conn = mqueue.connect_url({B.url!r})()

        @contextlib.contextmanager
        def transaction():   # the worker's transactions; the one that ran the task dies unfinished
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            if returned:
                os.kill(os.getpid(), signal.SIGKILL)
            conn.commit()
        mqueue.Worker(None, registry=reg, hooks={{'transaction': transaction}}, batch=1).run(burst=True)
        """)], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert query(db, f'SELECT COUNT(*) FROM {reg.result_table}') == ((0,),)
    assert query(db, f'SELECT COUNT(*) FROM {ledger}') == ((0,),)
    with committed() as conn:
        assert reg.result(conn, task_id)[1:5] == ('running', None, [], 1)   # claimed by a worker now dead
    wait_for(lambda: worker(reg, rescue_after=0.2, lease=60).run(burst=True), timeout=10, interval=0.1)
    with committed() as conn:
        again = reg.result(conn, task_id)
    assert (again.status, again.value, again.attempts) == ('succeeded', 2, 2)
    assert query(db, f'SELECT note FROM {ledger}') == (('kept',),)


def test_wait_for_result_returns_once_the_task_ends_or_at_its_timeout(db, reg):
    """On its own connection: a task still pending at the timeout comes back pending; one that a
    worker finishes meanwhile, as soon as it commits (on PostgreSQL woken by the NOTIFY)."""
    go = threading.Event()

    @reg.task(name='slow', result=60)
    def slow(n):
        go.wait(10)
        return n * 2
    task_id = enqueued(reg, 'slow', [21])
    started = time.monotonic()
    assert reg.wait_for_result(connect, task_id, 0.3).status == 'pending'
    assert 0.3 <= time.monotonic() - started < 2
    w = worker(reg)
    thread = run_in_thread(w)
    try:
        threading.Timer(0.5, go.set).start()
        started = time.monotonic()
        done = reg.wait_for_result(B.url, task_id, 10)
        took = time.monotonic() - started
    finally:
        go.set()
        w.stop()
        thread.join(10)
    assert (done.status, done.value) == ('succeeded', 42) and 0.4 < took < 3, (done, took)
    assert reg.wait_for_result(connect, 10 ** 9, 5).status == 'unknown'   # nothing to wait for: at once


def test_expired_results_are_deleted_by_workers_in_bounded_batches_and_by_purge(db, reg, monkeypatch):
    monkeypatch.setattr(mqueue, 'RESULTS_PURGE_MAX', 2)
    monkeypatch.setattr(mqueue, 'RESULTS_PURGE_EVERY', 0.0)   # a worker deletes at its first step
    reg.task(name='brief', result=0.01)(lambda: 'soon gone')
    reg.task(name='kept', result=3600)(lambda: 'kept')
    with committed() as conn:
        ids = reg.enqueue_many(conn, 'brief', [[]] * 5) and [row['id'] for row in tasks_in(conn, reg)]
        kept = reg.enqueue(conn, 'kept')
    assert worker(reg, batch=20).run(burst=True) == 6
    assert query(db, f'SELECT COUNT(*) FROM {reg.result_table}') == ((6,),)
    time.sleep(0.05)   # (past the brief results' 10 ms)
    assert worker(reg, batch=20).run(burst=True) == 0       # its first step deleted 2 of the 5 expired
    assert query(db, f'SELECT COUNT(*) FROM {reg.result_table}') == ((4,),)
    with committed() as conn:
        assert reg.purge_results(conn) == 3                  # the rest, 2 per statement
        assert [reg.result(conn, task_id).status for task_id in ids] == ['unknown'] * 5
        assert reg.result(conn, kept).value == 'kept'


def test_results_with_hooks_that_swallow_errors_or_take_only_the_documented_fields(db, reg):
    """An around_task hook that swallows the task's exception makes it a success (a null result);
    a task_succeeded hook taking only (context, duration) works for tasks that keep results."""
    seen = []

    @contextlib.contextmanager
    def forgiving(context):
        try:
            yield
        except ValueError:
            pass

    def succeeded(context, duration):
        seen.append(context.id)

    @reg.task(name='oops', result=60)
    def oops():
        raise ValueError('swallowed')
    task_id = enqueued(reg, 'oops')
    w = worker(reg, hooks={'around_task': forgiving, 'task_succeeded': succeeded})
    assert w.run(burst=True) == 1 and seen == [task_id]
    with committed() as conn:
        assert reg.result(conn, task_id)[1:3] == ('succeeded', None)


@only('mysql', 'postgresql')
def test_a_keyed_enqueue_left_open_does_not_hold_up_the_task_holding_the_key(db, reg):
    """The enqueue that found the key taken stays in an open transaction while the task holding
    the key completes: the completion does not wait for it (MySQL: no IGNORE duplicate check's
    share lock, as the holder was read first)."""
    reg.task(name='t')(lambda: None)
    holder = enqueued(reg, 't', [], unique='open')
    conn = connect()
    try:
        again = reg.enqueue(conn, 't', [], unique='open')
        assert again == holder and not again.created
        done = []
        thread = threading.Thread(target=lambda: done.append(worker(reg).run(burst=True)))
        thread.start()
        thread.join(10)
        assert done == [1] and tasks_in(db, reg) == []
    finally:
        conn.rollback()
        conn.close()


@only('sqlite')
def test_a_sqlite_connection_given_to_a_worker_gets_its_synchronous_level_back(db, reg):
    reg.task(name='t')(lambda: None)
    enqueued(reg, 't')
    conn = mqueue.connect_url(B.url)()
    try:
        assert query(conn, 'PRAGMA synchronous') == ((2,),)
        assert mqueue.Worker(conn, registry=reg, crons=False).run(burst=True) == 1   # (its last claim: NORMAL)
        assert query(conn, 'PRAGMA synchronous') == ((2,),)
    finally:
        conn.close()


def test_a_dead_task_brought_back_keeps_the_result_of_its_new_end(db, reg):
    """retry_dead deletes the result a task died with, so the one it keeps when it ends again is
    written (MySQL inserts results with IGNORE: a stale row would win)."""
    tries = []

    @reg.task(name='second_time', result=60, retries=0)
    def second_time():
        tries.append(1)
        if len(tries) == 1:
            raise ValueError('first')
        return 'done'
    task_id = enqueued(reg, 'second_time')
    assert worker(reg).run(burst=True) == 1
    assert query(db, f'SELECT status FROM {reg.result_table}') == (('dead',),)
    with committed() as conn:
        assert reg.retry_dead(conn, [task_id]) == 1
    assert query(db, f'SELECT COUNT(*) FROM {reg.result_table}') == ((0,),)
    assert worker(reg).run(burst=True) == 1
    with committed() as conn:
        assert reg.result(conn, task_id)[1:3] == ('succeeded', 'done')


def test_cli_result_and_purge_results(db, reg, capsys):
    reg.task(name='answer', result=60)(lambda: {'answer': 42})
    task_id = enqueued(reg, 'answer')
    base = ['--db', B.url, '--table', reg.table]
    assert mqueue.main(['result', str(task_id), *base]) == 0
    assert capsys.readouterr().out.startswith(f'task {task_id} answer: pending')
    assert mqueue.main(['result', str(task_id), *base, '--json']) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown['status'], shown['name'], shown['args']) == ('pending', 'answer', [])
    assert worker(reg).run(burst=True) == 1
    assert mqueue.main(['result', str(task_id), *base, '--json']) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown['status'], shown['value'], shown['attempts'], shown['error']) == ('succeeded', {'answer': 42}, 1, None)
    assert (shown['name'], shown['args']) == ('answer', None)   # (the row, and its arguments, are gone)
    assert mqueue.main(['result', str(task_id), *base]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith(f'task {task_id} answer: succeeded, 1 attempt; enqueued ') and text[1] == '  value: {"answer": 42}'
    assert mqueue.main(['purge', '--results', *base]) == 0
    assert capsys.readouterr().out == '0 expired results purged\n'
    with pytest.raises(SystemExit):
        mqueue.main(['purge', *base])   # neither --older-than nor --results


# The dashboard (mqueue_web) ###################################################################
# Through its WSGI interface here, on every backend; test_web.py drives it in a real browser.


class Browserless:
    """A client of a WSGI application, as a browser would be: it keeps the cookies it is given."""

    def __init__(self, app, auth=None, prefix=''):
        self.app, self.auth, self.prefix, self.cookies = app, auth, prefix, {}

    def request(self, method, path, form=None, headers=None, csrf=True):
        import io
        from urllib.parse import urlencode
        from wsgiref.util import setup_testing_defaults
        path, _, query = path.partition('?')
        form = dict(form or {})
        if method == 'POST' and csrf:
            form.setdefault('csrf', self.cookies.get('mqueue_csrf', ''))
        body = urlencode(form, doseq=True).encode()
        environ = {'REQUEST_METHOD': method, 'PATH_INFO': path, 'QUERY_STRING': query, 'SCRIPT_NAME': '',
                   'CONTENT_LENGTH': str(len(body)), 'wsgi.input': io.BytesIO(body), 'HTTP_HOST': '127.0.0.1:8080',
                   'HTTP_COOKIE': '; '.join(f'{k}={v}' for k, v in self.cookies.items())}
        if self.auth:
            environ['HTTP_AUTHORIZATION'] = self.auth
        environ.update(headers or {})
        setup_testing_defaults(environ)
        answer = {}

        def start_response(status, response_headers):
            answer['status'], answer['headers'] = int(status.split()[0]), response_headers
        text = b''.join(self.app(environ, start_response)).decode()
        for name, value in answer['headers']:
            if name == 'Set-Cookie':
                key, _, rest = value.partition('=')
                self.cookies[key] = rest.split(';')[0]
        return answer['status'], dict(answer['headers']), text

    def get(self, path, **options):
        return self.request('GET', path, **options)

    def post(self, path, form, **options):
        return self.request('POST', path, form, **options)


def dead_and_scheduled_tasks(reg, dead=1, scheduled=1):
    """Tasks of a registry's tables: dead ones (a failing task, no retries) and scheduled ones."""
    @reg.task(name='mail.send', queue='mail', retries=0)
    def send(to, password):
        raise ValueError(f'mailbox {to} does not exist')
    for n in range(dead):
        enqueued(reg, 'mail.send', {'to': f'dead{n}@example.invalid', 'password': 'hunter2'}, queue='mail')
    assert worker(reg, batch=20).run(burst=True) == dead
    return [enqueued(reg, 'mail.send', {'to': f'later{n}@example.com', 'password': 'hunter2'}, queue='mail',
                     delay=3600) for n in range(scheduled)]


def test_dashboard_pages_show_the_queues_dead_scheduled_running_tasks_and_one_task(db, reg):
    import mqueue_web
    later, = dead_and_scheduled_tasks(reg)
    running = enqueued(reg, 'mail.send', {'to': 'run@example.com', 'password': 'x'}, queue='mail')
    query(db, B.sql(f"UPDATE {reg.table} SET claimed_at = {B.at(-90)}, eta = {B.at(60)}, worker = 'web1:42:w0', "
                    f'retries = 1 WHERE id = %s'), (running,))
    client = Browserless(mqueue_web.Dashboard(connect, reg))
    status, headers, page = client.get('/')
    assert status == 200 and 'mqueue_csrf' in client.cookies
    assert re.search(r'<td[^>]*>.*mail.*</td><td[^>]*>0</td><td[^>]*>1</td><td[^>]*>1</td><td[^>]*>1</td>', page), page
    status, _, page = client.get('/dead')
    dead_id = reg.dead_tasks(db)[0].id
    assert status == 200 and f'#{dead_id}' in page and 'ValueError: mailbox dead0@example.invalid' in page
    status, _, page = client.get(f'/task/{dead_id}')
    assert status == 200 and 'Traceback (most recent call last)' in page and 'dead0@example.invalid' in page
    assert 'hunter2' not in page and '&quot;password&quot;: &quot;***&quot;' in page   # (redacted)
    assert client.app._redacted({'db_password': 1, 'to': [{'Access_Token': 2, 'n': 3}]}) == {
        'db_password': '***', 'to': [{'Access_Token': '***', 'n': 3}]}
    status, _, page = client.get('/scheduled')
    assert status == 200 and f'#{later}' in page and 'hunter2' not in page
    status, _, page = client.get('/running')
    assert status == 200 and f'#{running}' in page and 'web1:42:w0' in page and re.search(r'1m ?3\d ?s|9\ds|1\.[56] ?m', page), page
    assert client.get('/task/999999999')[0] == 404 and client.get('/nowhere')[0] == 404


def test_dashboard_retries_and_deletes_dead_tasks_one_selected_or_all_matching(db, reg):
    import mqueue_web
    dead_and_scheduled_tasks(reg, dead=5, scheduled=0)
    ids = sorted(task.id for task in reg.dead_tasks(db))
    client = Browserless(mqueue_web.Dashboard(connect, reg))
    client.get('/dead')
    status, headers, _ = client.post('/action/retry', {'id': ids[:2], 'button': 'retry', 'back': '/dead?queue=mail'})
    assert status == 303 and headers['Location'].startswith('/dead?queue=mail&done=2+dead+tasks+retried&sig=')
    assert '2 dead tasks retried' in client.get(headers['Location'])[2]
    assert sorted(task.id for task in reg.dead_tasks(db)) == ids[2:]
    status, headers, _ = client.post('/action/retry', {'id': [ids[2], ids[0]], 'button': 'delete', 'back': '/dead'})
    assert sorted(task.id for task in reg.dead_tasks(db)) == ids[3:] and not reg.exists(db, ids[2])
    assert reg.exists(db, ids[0])   # (retried: pending, not dead, so not deleted)
    assert '1 dead task deleted' in client.get(headers['Location'])[2]
    assert '1 dead task deleted' not in client.get('/dead?done=1+dead+task+deleted&sig=0')[2]   # (a forged message)
    status, headers, _ = client.post('/action/retry', {'all': '1', 'queue': 'mail', 'name': 'mail.send',
                                                       'button': 'retry', 'back': '/dead'})
    assert 'done=2+dead+tasks+retried' in headers['Location'] and reg.dead_tasks(db) == []
    assert {row['id']: (row['retries'], row['dead_at']) for row in tasks_in(db, reg)} == {
        ids[0]: (0, None), ids[1]: (0, None), ids[3]: (0, None), ids[4]: (0, None)}


def test_dashboard_run_now_makes_a_scheduled_task_due_and_cancel_removes_one(db, reg):
    import mqueue_web
    first, second = dead_and_scheduled_tasks(reg, dead=0, scheduled=2)
    client = Browserless(mqueue_web.Dashboard(connect, reg))
    client.get('/scheduled')
    assert client.post('/action/run-now', {'id': [first], 'button': 'run-now', 'back': '/scheduled'})[0] == 303
    assert seconds_until_eta(db, reg, first) <= 1 and seconds_until_eta(db, reg, second) > 3500
    assert client.post('/action/run-now', {'id': [second], 'button': 'cancel', 'back': '/scheduled'})[0] == 303
    assert [row['id'] for row in tasks_in(db, reg)] == [first]
    eta = tasks_in(db, reg)[0]['eta']
    assert client.post('/action/run-now', {'id': [first], 'button': 'run-now', 'back': '/'})[0] == 303
    assert tasks_in(db, reg)[0]['eta'] == eta   # (due already: it keeps its place in line)
    assert worker(reg).run(burst=True) == 1   # (the task run now: it fails, no retries, and is dead)


def test_dashboard_refuses_a_post_without_its_csrf_token_or_from_another_origin_and_read_only_offers_nothing(db, reg):
    import mqueue_web
    dead_and_scheduled_tasks(reg, dead=1, scheduled=0)
    dead_id = reg.dead_tasks(db)[0].id
    client = Browserless(mqueue_web.Dashboard(connect, reg))
    client.get('/dead')
    assert client.post('/action/retry', {'id': [dead_id], 'button': 'retry'}, csrf=False)[0] == 403
    assert client.post('/action/retry', {'id': [dead_id], 'button': 'retry', 'csrf': 'guess'}, csrf=False)[0] == 403
    assert client.post('/action/retry', {'id': [dead_id], 'button': 'retry'},
                       headers={'HTTP_ORIGIN': 'https://evil.example'})[0] == 403
    status, headers, _ = client.post('/action/retry', {'id': [], 'button': 'retry', 'back': '/dead\r\nSet-Cookie: x=1'})
    assert status == 303 and headers['Location'].startswith('/?done=') and 'x=1' not in str(headers)
    for back in ('//evil.example/', '/\\evil.example', 'https://evil.example/'):
        assert client.post('/action/retry', {'id': [], 'button': 'retry', 'back': back})[1]['Location'].startswith('/?')
    assert client.get('/dead/%0D%0ASet-Cookie:%20x=1')[0] == 404 and client.get('/task/\u00b2')[0] == 404
    assert client.get('/task/99999999999999999999999')[0] == 404
    assert client.get('/dead?before=2026-01-01T00:00:00,99999999999999999999')[0] == 404
    assert client.post('/action/retry', {'id': [dead_id], 'button': 'retry'}, headers={'CONTENT_LENGTH': '-1'})[0] == 403
    stranger = Browserless(client.app)   # (no cookie: a form posted from another site's page)
    assert stranger.post('/action/retry', {'id': [dead_id], 'button': 'retry', 'csrf': ''}, csrf=False)[0] == 403
    assert [task.id for task in reg.dead_tasks(db)] == [dead_id]
    reader = Browserless(mqueue_web.Dashboard(connect, reg, read_only=True))
    for path in ('/dead', f'/task/{dead_id}', '/scheduled'):
        status, _, page = reader.get(path)
        assert status == 200 and '<form method="post"' not in page and 'type="checkbox"' not in page
    assert reader.post('/action/retry', {'id': [dead_id], 'button': 'retry'})[0] == 403
    assert [task.id for task in reg.dead_tasks(db)] == [dead_id]


def test_dashboard_pages_through_dead_tasks_by_keyset(db, reg):
    import mqueue_web
    dead_and_scheduled_tasks(reg, dead=120, scheduled=0)
    every_third = ', '.join(str(task.id) for task in reg.dead_tasks(db, limit=200)[::3])
    query(db, f'UPDATE {reg.table} SET dead_at = {B.at(-60)} WHERE id IN ({every_third})')   # (ties, and order)
    client = Browserless(mqueue_web.Dashboard(connect, reg))
    seen, path = [], '/dead?queue=mail'
    while path:
        status, _, page = client.get(path)
        assert status == 200
        seen += [int(n) for n in re.findall(r'name="id" value="(\d+)"', page)]
        older = re.search(r'<a href="([^"]+)">Older', page)
        path = html.unescape(older.group(1)) if older else None
    assert len(seen) == 120 and len(set(seen)) == 120
    assert seen == [task.id for task in reg.dead_tasks(db, limit=200)]


@pytest.mark.parametrize('blocks', [mqueue.PROBE_BLOCKS, 1])
def test_scheduled_tasks_are_merged_across_queues_and_priorities_soonest_first(db, reg, monkeypatch, blocks):
    """The scheduled list reads a range per (queue, priority) and merges them (past PROBE_BLOCKS
    pairs, here 1, one statement sorts them all): either way every waiting task once, soonest
    first across queues and priorities, page after page; due and running tasks are not listed."""
    monkeypatch.setattr(mqueue, 'PROBE_BLOCKS', blocks)
    expected = []
    with committed() as conn:
        for n in range(18):   # each queue and priority holds some; their etas interleave
            queue, priority = ('a', 'b')[n % 2], (n % 3) - 1
            task_id = reg.enqueue(conn, 'x', [n], queue=queue, priority=priority, delay=3600 + 60 * (17 - n))
            expected.append((3600 + 60 * (17 - n), task_id))
        reg.enqueue(conn, 'x', [], queue='a')                  # due: not scheduled
    expected = [task_id for _, task_id in sorted(expected)]
    with a_running_task(reg) as reader:                        # claimed, its eta the lease's end: not listed
        pages, after = [], None
        while len(pages) < 10:
            page = reg.scheduled_tasks(reader, limit=4, after=after)
            if not page:
                break
            pages.append(page)
            after = page[-1]
        only_b = reg.scheduled_tasks(reader, queue='b', limit=100)
        reader.rollback()
    listed = [task.id for page in pages for task in page]
    assert listed == expected and len(pages) == 5
    assert [task.id for task in only_b] == [task_id for task_id in expected
                                            if task_id in {t.id for page in pages for t in page if t.queue == 'b'}]
    assert len(only_b) == 9 and all(task.queue == 'b' for task in only_b)


def test_dashboard_pages_through_scheduled_tasks_by_keyset_whatever_the_precision_of_their_times(db, reg):
    """Scheduled tasks at one instant, their etas written with microseconds, with milliseconds
    (SQLite's text: as enqueue(eta=...) wrote them once, and as it writes them now) or none: each
    is seen once, and the pages end."""
    import mqueue_web
    reg.task(name='later', queue='mail')(lambda: None)
    ids = [enqueued(reg, 'later', [], queue='mail', delay=3600) for _ in range(130)]
    if B.dialect.name == 'sqlite':
        for n, text in enumerate(('2099-01-01 00:00:00.123456', '2099-01-01 00:00:00.123', '2099-01-01 00:00:00')):
            query(db, f'UPDATE {reg.table} SET eta = ? WHERE id % 3 = ?', (text, n))
    client = Browserless(mqueue_web.Dashboard(connect, reg))
    seen, path, pages = [], '/scheduled', 0
    while path and pages < 10:
        page = client.get(path)[2]
        seen += [int(n) for n in re.findall(r'name="id" value="(\d+)"', page)]
        later = re.search(r'<a href="([^"]+)">Later', page)
        path, pages = html.unescape(later.group(1)) if later else None, pages + 1
    assert sorted(seen) == ids and pages == 3


def test_dashboard_asks_for_credentials_and_is_never_served_open_beyond_loopback(reg, tmp_path):
    import base64
    import mqueue_web
    locked = mqueue_web.Dashboard(connect, reg, password='s3cret', token='t0ken')
    assert Browserless(locked).get('/')[0] == 401
    assert Browserless(locked, auth='Basic ' + base64.b64encode(b'mqueue:wrong').decode()).get('/')[0] == 401
    assert Browserless(locked, auth='Basic ' + base64.b64encode(b'mqueue:s3cret').decode()).get('/')[0] == 200
    assert Browserless(locked, auth='Bearer t0ken').get('/')[0] == 200
    assert Browserless(locked, auth='Bearer nope').get('/')[0] == 401
    with pytest.raises(mqueue.MQueueError, match='without credentials'):
        mqueue_web.serve(mqueue_web.Dashboard(connect, reg), '0.0.0.0', 0)
    done = subprocess.run([sys.executable, '-m', 'mqueue', 'web', '--db', B.url, '--table', reg.table,
                           '--bind', '0.0.0.0:0'], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={k: v for k, v in os.environ.items() if not k.startswith('MQUEUE_WEB_')})
    assert done.returncode == 1 and 'without credentials' in done.stderr, done.stderr
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        done = subprocess.run([sys.executable, '-m', 'mqueue', 'web', '--db', B.url, '--table', reg.table, '--bind',
                               f'127.0.0.1:{taken.getsockname()[1]}'], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and done.stderr.startswith('mqueue: cannot listen on 127.0.0.1:'), done.stderr


def test_dashboard_mounted_under_a_prefix_links_within_it(reg):
    import mqueue_web

    def site(environ, start_response):
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'the site']
    app = mqueue_web.mount(site, '/ops/mqueue', mqueue_web.Dashboard(connect, reg))
    client = Browserless(app)
    assert client.get('/about')[2] == 'the site'
    status, _, page = client.get('/ops/mqueue/')
    assert status == 200 and 'href="/ops/mqueue/dead"' in page and 'href="/dead"' not in page
    assert client.get('/ops/mqueue/dead')[0] == 200


def test_dashboard_crons_page_shows_the_schedule_and_runs_a_cron_now(db, reg):
    import mqueue_web
    reg.cron('0 3 * * *', name='nightly', queue='ops')(lambda: None)
    client = Browserless(mqueue_web.Dashboard(connect, reg))
    status, _, page = client.get('/crons')
    assert status == 200 and 'nightly' in page and '0 3 * * *' in page
    status, headers, _ = client.post('/action/run-cron', {'name': 'nightly', 'queue': 'ops', 'back': '/crons'})
    assert status == 303 and 'nightly+enqueued+as+task' in headers['Location']
    assert [(row['name'], row['queue']) for row in tasks_in(db, reg)] == [('nightly', 'ops')]


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_docs_flask_recipe_mounts_the_dashboard_behind_its_password(server, tmp_path, monkeypatch):
    """docs/dashboard.md's Flask application, run as written on a database of its own: the site at
    /, the dashboard under /mqueue/ behind its password."""
    import base64
    with database_of_its_own(tmp_path) as url:
        own = Backend(B.name, url).connect(autocommit=True)
        mqueue.Registry().create_tables(own)
        own.close()
        monkeypatch.setenv('MQUEUE_DATABASE_URL', url)
        monkeypatch.setenv('MQUEUE_WEB_PASSWORD', 'pw-of-the-test')
        namespace = {'__name__': 'flask_recipe'}
        exec(readme_block('dashboard-flask'), namespace)
        client = namespace['app'].test_client()
        assert client.get('/').text == 'the shop'
        assert client.get('/mqueue/').status_code == 401
        auth = {'Authorization': 'Basic ' + base64.b64encode(b'mqueue:pw-of-the-test').decode()}
        page = client.get('/mqueue/dead', headers=auth)
        assert page.status_code == 200 and '<h1>Dead tasks</h1>' in page.text and 'href="/mqueue/scheduled"' in page.text


@only('mysql', 'postgresql')
def test_the_database_password_appears_on_no_page_and_in_no_log(db, reg, caplog):
    """A user with a password of its own; the dashboard's pages (an error page too) and the log
    never show it."""
    import mqueue_web
    user, password = f'web_{uuid.uuid4().hex[:8]}', 'Pw-' + uuid.uuid4().hex
    if B.dialect.name == 'mysql':
        create = [f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'",
                  f"GRANT ALL ON test.* TO '{user}'@'127.0.0.1'"]
        drop = [f"DROP USER '{user}'@'127.0.0.1'"]
    else:   # (the test's own tables only: GRANT ON ALL TABLES would race the other tests' DDL and autovacuum)
        tables = f'{reg.table}, {reg.result_table}, {reg.cron_table}'
        create = [f"CREATE USER {user} PASSWORD '{password}'", f'GRANT ALL ON {tables} TO {user}',
                  f'GRANT ALL ON SEQUENCE {reg.table}_id_seq TO {user}']
        drop = [f'REVOKE ALL ON {tables} FROM {user}', f'REVOKE ALL ON SEQUENCE {reg.table}_id_seq FROM {user}',
                f'DROP USER {user}']
    for statement in create:
        query(db, statement)
    try:
        dead_and_scheduled_tasks(reg)
        scheme, rest = B.url.split('://', 1)
        url = f'{scheme}://{user}:{password}@{rest.split("@", 1)[1]}'
        client = Browserless(mqueue_web.Dashboard(mqueue.connect_url(url), reg))
        pages = [client.get(path)[2] for path in ('/', '/dead', '/scheduled', '/running', '/crons')]
        assert all(user in page for page in pages) and not any(password in page for page in pages)
        broken = Browserless(mqueue_web.Dashboard(mqueue.connect_url(url.replace('/test', '/no_such_db')), reg))
        with caplog.at_level(logging.INFO, logger='mqueue'):
            status, _, page = broken.get('/')
        assert status == 500 and password not in page and password not in caplog.text
    finally:
        for statement in drop:
            query(db, statement)


# Unique tasks ####################################################################################


def test_a_unique_key_is_held_while_its_task_is_pending_and_let_go_when_it_ends(db, reg):
    ran = []

    @reg.task(name='job', retries=0)
    def job(n):
        ran.append(n)
        if n == 'fail':
            raise ValueError('no')
    with committed() as conn:
        first = reg.enqueue(conn, 'job', ['a'], unique='k')
        again = reg.enqueue(conn, 'job', ['b'], unique='k')     # (its own insert is visible to it)
    assert first.created and not again.created and again == first and isinstance(again, int)
    assert [row['unique_key'] for row in tasks_in(db, reg)] == ['k']
    assert worker(reg).run(burst=True) == 1 and ran == ['a']
    third = enqueued(reg, 'job', ['fail'], unique='k')          # done: the key is free
    assert third.created and third != first
    assert worker(reg).run(burst=True) == 1                     # dead: it lets go of the key
    fourth = enqueued(reg, 'job', ['c'], unique='k')
    assert fourth.created and [row['unique_key'] for row in tasks_in(db, reg)] == [None, 'k']
    assert type(enqueued(reg, 'job', ['d'])) is int             # no key: a plain id
    with committed() as conn:
        for bad in ('', 'x' * 256, 7):
            with pytest.raises(ValueError, match='unique must be'):
                reg.enqueue(conn, 'job', [], unique=bad)


def test_a_task_that_keeps_its_key_while_dead_holds_it_until_purged(db, reg):
    @reg.task(name='keeper', retries=0, unique_while_dead=True)
    def keeper():
        raise ValueError('no')
    first = enqueued(reg, 'keeper', [], unique='kk')
    assert worker(reg).run(burst=True) == 1
    again = enqueued(reg, 'keeper', [], unique='kk')
    assert again == first and not again.created                   # dead, and still holding it
    assert reg.purge_dead(db, 0) == 1
    if B.dialect.name == 'sqlite':
        db.commit() if db.in_transaction else None
    assert enqueued(reg, 'keeper', [], unique='kk').created


def test_a_task_keyed_by_its_arguments_and_enqueue_many(db, reg):
    reg.task(name='digest', unique=True)(lambda day: None)
    with committed() as conn:
        monday = reg.enqueue(conn, 'digest', ['mon'])
        assert reg.enqueue(conn, 'digest', ['mon']) == monday and not reg.enqueue(conn, 'digest', ['mon']).created
        assert reg.enqueue(conn, 'digest', ['tue']).created
        assert reg.enqueue(conn, 'digest', ['mon'], unique=False) != monday          # unkeyed on request
        assert reg.enqueue_many(conn, 'digest', [['mon'], ['wed'], ['wed'], ['thu']]) == 2
        long = ['x' * 300]                                                            # a key hashed to fit
        assert reg.enqueue(conn, 'digest', long).created and not reg.enqueue(conn, 'digest', long).created
        with pytest.raises(TypeError, match='unique=True'):
            reg.enqueue_many(conn, 'digest', [['fri']], unique='one key')
    keys = sorted(row['unique_key'] or '' for row in tasks_in(db, reg))
    assert keys[:6] == ['', 'digest:["mon"]', 'digest:["thu"]', 'digest:["tue"]', 'digest:["wed"]',
                        'digest:sha256:' + hashlib.sha256(json.dumps(long, separators=(',', ':')).encode()).hexdigest()]


@pytest.mark.parametrize('outcome', ['commit', 'rollback'])
def test_two_transactions_enqueueing_one_key_at_once_the_second_waits_for_the_first(db, reg, outcome):
    """The second waits on the unique index for the first to end: then it returns the first's
    task (committed), or inserts its own (rolled back)."""
    first = connect()
    first_id = reg.enqueue(first, 't', [], unique='same')
    second = {}

    def enqueue_second():
        conn = connect()
        second['id'] = reg.enqueue(conn, 't', [], unique='same')
        conn.commit()
        conn.close()
    thread = threading.Thread(target=enqueue_second)
    thread.start()
    try:
        thread.join(0.5)
        assert thread.is_alive()                               # waiting for the first
        getattr(first, outcome)()
    finally:
        first.close()   # (an open transaction would keep the tables from being dropped)
    thread.join(15)
    assert not thread.is_alive()
    if outcome == 'commit':
        assert second['id'] == first_id and not second['id'].created
    else:
        assert second['id'].created   # (SQLite may give it the same id: the rolled-back one was never used)
    assert [row['id'] for row in tasks_in(db, reg)] == [int(second['id'])]


@only('mysql', 'postgresql')
@pytest.mark.parametrize('isolation', ['READ COMMITTED', 'REPEATABLE READ'])
def test_a_keyed_enqueue_does_not_wait_on_the_running_task_that_holds_its_key(db, reg, isolation):
    started, proceed = threading.Event(), threading.Event()

    @reg.task(name='hold')
    def hold():
        started.set()
        assert proceed.wait(30)
    held = enqueued(reg, 'hold', [], unique='busy')
    thread = threading.Thread(target=worker(reg).run_once)
    thread.start()
    conn = connect()
    try:
        assert started.wait(10)
        with cursor_of(conn) as cursor:
            cursor.execute(B.dialect.isolation.format(level=isolation))   # (from the next transaction)
            B.lock_timeout(cursor, 5)
        conn.commit()
        began = time.monotonic()
        again = reg.enqueue(conn, 'hold', [], unique='busy')
        took = time.monotonic() - began
        conn.rollback()
    finally:
        conn.close()   # (an open transaction would keep the tables from being dropped)
        proceed.set()
        thread.join(10)
    assert again == held and not again.created and took < 1, took


@only('mysql', 'postgresql')
@pytest.mark.parametrize('isolation', ['READ COMMITTED', 'REPEATABLE READ'])
def test_a_keyed_enqueue_and_a_batch_that_just_retried_the_keys_task(db, reg, isolation):
    """The key's task failed and was scheduled again in a batch still running another task. MySQL:
    the enqueue gets the task's id at once (the key's index entry is not part of that write).
    PostgreSQL: that write put a new version of the row, and of its index entry, so the enqueue
    waits for the batch to commit, then gets the id; at REPEATABLE READ, PostgreSQL's
    serialization failure instead (docs/unique.md says so)."""
    started, proceed = threading.Event(), threading.Event()

    @reg.task(name='flaky', retries=1, backoff=3600)
    def flaky():
        raise ConnectionError('later')

    @reg.task(name='hold')
    def hold():
        started.set()
        assert proceed.wait(30)
    keyed = enqueued(reg, 'flaky', [], unique='retrying')
    enqueued(reg, 'hold', [])
    thread = threading.Thread(target=worker(reg, batch=2).run_once)   # flaky fails, then hold runs
    thread.start()
    got = {}

    def enqueue_again():
        conn = connect()
        with cursor_of(conn) as cursor:
            cursor.execute(B.dialect.isolation.format(level=isolation))   # (from the next transaction)
            B.lock_timeout(cursor, 20)
        conn.commit()
        try:
            got['id'] = reg.enqueue(conn, 'flaky', [], unique='retrying')
        except Exception as exc:
            got['error'] = exc
        got['at'] = time.monotonic()
        conn.rollback()
        conn.close()
    try:
        assert started.wait(10)
        enqueuing = threading.Thread(target=enqueue_again)
        enqueuing.start()
        enqueuing.join(0.5 if B.dialect.name == 'postgresql' else 5)
        waited = enqueuing.is_alive()
        released = time.monotonic()
        proceed.set()
        enqueuing.join(15)
    finally:
        proceed.set()
        thread.join(10)
    if B.dialect.name == 'postgresql' and isolation == 'REPEATABLE READ':
        assert B.dialect.error_code(got['error']) == '40001', got
    else:
        assert got['id'] == keyed and not got['id'].created, got
    assert waited == (B.dialect.name == 'postgresql') and (got['at'] >= released) == waited
    row = next(row for row in tasks_in(db, reg) if row['id'] == keyed)
    assert row['retries'] == 1 and row['last_error'].startswith('ConnectionError: later')   # retried, as said


@only('mysql', 'postgresql')
def test_a_key_committed_after_a_repeatable_read_transaction_began_reading(db, reg):
    """Documented: MySQL returns the key's holder (a locking read sees it) and the transaction goes
    on; PostgreSQL raises its serialization failure, as for any such conflict there."""
    late = connect()
    with cursor_of(late) as cursor:
        cursor.execute(B.dialect.isolation.format(level='REPEATABLE READ'))   # (from the next transaction)
    late.commit()
    query(late, f'SELECT COUNT(*) FROM {reg.table}')             # its snapshot begins
    enqueued(reg, 't', [], unique='late')                        # another transaction commits the key
    try:
        if B.dialect.name == 'mysql':   # the insert's duplicate check, then a locking read, see it
            again = reg.enqueue(late, 't', [], unique='late')
            assert not again.created and reg.enqueue(late, 't', ['other']) and late.commit() is None
            assert len(tasks_in(db, reg)) == 2 and again in [row['id'] for row in tasks_in(db, reg)]
        else:
            with pytest.raises(Exception) as caught:
                reg.enqueue(late, 't', [], unique='late')
            assert B.dialect.error_code(caught.value) == '40001'
            late.rollback()
            assert len(tasks_in(db, reg)) == 1
    finally:
        late.close()


def test_cli_enqueue_with_a_unique_key(db, reg, capsys):
    base = ['--db', B.url, '--table', reg.table]
    assert mqueue.main(['enqueue', 't', '--unique', 'nightly', *base]) == 0
    (task_id,) = [row['id'] for row in tasks_in(db, reg)]
    assert capsys.readouterr().out == f'enqueued task {task_id} t (queue default)\n'
    assert mqueue.main(['enqueue', 't', '--unique', 'nightly', *base]) == 0
    assert capsys.readouterr().out == f"task {task_id} holds unique key 'nightly': nothing enqueued\n"
    assert mqueue.main(['enqueue', 't', '--unique', 'nightly', '--json', *base]) == 0
    assert json.loads(capsys.readouterr().out) == {'id': task_id, 'name': 't', 'queue': 'default', 'created': False}
    with pytest.raises(SystemExit):
        mqueue.main(['enqueue', 't', '--unique', 'x' * 256, *base])


# Timeouts ########################################################################################
# A task past its timeout: its session ended from another connection, its writes rolled back, its
# row locks freed at once, the attempt failed with TaskTimeout; its batch-mates back uncounted.

# A statement that runs for a minute on each database (SQLite: until interrupted)
BLOCKING_SQL = {'mysql': 'SELECT SLEEP(60)', 'postgresql': 'SELECT pg_sleep(60)',
                'sqlite': 'WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT COUNT(*) FROM r'}


def last_error_type(row):
    return json.loads(row['errors'])[-1]['type']


def enqueue_a_task_that_hangs_in_the_database(reg):
    """A task 'hang' with a timeout of half a second, which blocks in a minute-long statement; one
    of it enqueued."""
    @reg.task(name='hang', timeout=0.5)
    def hang():
        with cursor_of(mqueue.current().connection) as cursor:
            cursor.execute(BLOCKING_SQL[B.dialect.name])
    enqueued(reg, 'hang')


def test_a_task_blocked_in_the_database_past_its_timeout_is_ended_retried_then_dead(db, reg, ledger):
    @reg.task(name='quick')
    def quick():
        write_ledger(ledger, 'quick')

    @reg.task(name='hang', timeout=1, retries=1, backoff=60)
    def hang():
        write_ledger(ledger, 'hang')
        with cursor_of(mqueue.current().connection) as cursor:
            cursor.execute(BLOCKING_SQL[B.dialect.name])
    ids = [enqueued(reg, name) for name in ('quick', 'hang', 'quick')]   # one batch, the hanging task between
    w = worker(reg, batch=3)
    began = time.monotonic()
    assert w.run_once() == 3   # the batch ended with its timeout
    assert time.monotonic() - began < 10   # not the statement's minute
    rows = wait_for(lambda: (rows := {r['id']: r for r in tasks_in(db, reg)}) and
                    rows[ids[1]]['claimed_at'] is None and rows[ids[0]]['claimed_at'] is None and rows)
    hanging = rows[ids[1]]
    assert hanging['retries'] == 1 and hanging['last_error'].startswith('TaskTimeout: hang() ran past its timeout of 1s')
    assert last_error_type(hanging) == 'mqueue.TaskTimeout' and hanging['dead_at'] is None
    assert 25 < seconds_until_eta(db, reg, ids[1]) <= 60   # retried after its back-off
    for mate in (ids[0], ids[2]):   # handed back uncounted, due at once
        assert rows[mate]['retries'] == 0 and rows[mate]['errors'] is None and seconds_until_eta(db, reg, mate) <= 0
    assert query(db, f'SELECT COUNT(*) FROM {ledger}') == ((0,),)   # every write of the batch rolled back
    assert worker(reg, batch=3).run(burst=True) == 2   # the batch-mates run again, once each
    assert sorted(query(db, f'SELECT task_id, note FROM {ledger}')) == [(ids[0], 'quick'), (ids[2], 'quick')]
    query(db, f'UPDATE {reg.table} SET eta = {B.at(-1)} WHERE id = %s', (ids[1],))
    assert w.run_once() == 1   # its second and last attempt times out too: dead
    row = wait_for(lambda: [r for r in tasks_in(db, reg) if r['dead_at'] is not None])[0]
    assert row['retries'] == 2 and [e['type'] for e in json.loads(row['errors'])] == ['mqueue.TaskTimeout'] * 2
    assert query(db, f'SELECT COUNT(*) FROM {ledger} WHERE note = %s', ('hang',)) == ((0,),)


def test_a_task_within_its_timeout_and_the_workers_default(db, reg, ledger):
    @reg.task(name='quick', timeout=30)
    def quick():
        write_ledger(ledger)

    @reg.task(name='plain')
    def plain():
        write_ledger(ledger)
    ids = [enqueued(reg, name) for name in ('quick', 'plain', 'plain')]
    sent = []
    w = recording_worker(reg, sent, batch=3, timeout=45)
    assert w.run_once() == 3
    assert sorted(row[0] for row in query(db, f'SELECT task_id FROM {ledger}')) == ids
    # the lease writes the tasks' deadlines: one statement per timeout in the batch (the task's, the worker's)
    assert len([sql for sql in sent if sql.startswith(f'UPDATE {reg.table} SET retries = retries + 1')]) == 2
    assert not w._watchdog.watches   # each forgotten as it returned


def test_a_task_that_never_returns_stops_its_worker(db, reg, monkeypatch):
    monkeypatch.setattr(mqueue, 'TIMEOUT_GRACE', 0.5)
    release, spinning = threading.Event(), threading.Event()

    @reg.task(name='spin', timeout=0.5, backoff=60)
    def spin():
        spinning.set()
        while not release.is_set():   # pure Python: nothing another thread can interrupt
            sum(range(100))
    task_id = enqueued(reg, 'spin')
    w = worker(reg)   # one thread: the task runs in a thread of its own all the same
    outcome = {}

    def run():
        try:
            w.run()
        except mqueue.MQueueError as exc:
            outcome['error'] = str(exc)
    runner = threading.Thread(target=run, daemon=True)
    try:
        runner.start()
        assert spinning.wait(10)
        runner.join(10)
        assert not runner.is_alive() and release.is_set() is False   # run() gave up on it while it spun on
        assert re.fullmatch(r'task \d+ spin \(queue default\) attempt 1 ran past its timeout of 0.5s and did not return '
                            r'within 0.5s of being timed out .*: the worker stopped, for its supervisor to restart it',
                            outcome['error'])
        row = tasks_in(db, reg)[0]
        if B.dialect.kill:   # its session ended: recorded while the task spins on, its row lock gone
            assert row['claimed_at'] is None and last_error_type(row) == 'mqueue.TaskTimeout'
        else:   # SQLite: its transaction holds the write lock until the task returns (or the process exits)
            assert row['claimed_at'] is not None
    finally:
        release.set()
    row = wait_for(lambda: (row := tasks_in(db, reg)[0])['claimed_at'] is None and row)
    assert row['id'] == task_id and row['retries'] == 1 and last_error_type(row) == 'mqueue.TaskTimeout'


# asyncio: aenqueue on each asyncio driver, in the caller's transaction

ASYNC_DRIVERS = {'mysql': ['aiomysql'], 'postgresql': ['psycopg', 'asyncpg'], 'sqlite': ['aiosqlite']}


async def async_connect(driver):
    """A new asyncio connection to the running test's database through this driver, as an
    application opens one (autocommit off where the driver has it)."""
    if driver == 'aiomysql':
        import aiomysql
        return await aiomysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user='root', db='test', autocommit=False)
    if driver == 'psycopg':   # (rows as dicts, as FastAPI applications often have them)
        import psycopg
        from psycopg.rows import dict_row
        return await psycopg.AsyncConnection.connect('host=127.0.0.1 port=5432 user=postgres dbname=test',
                                                     row_factory=dict_row)
    if driver == 'asyncpg':
        import asyncpg
        return await asyncpg.connect(host='127.0.0.1', port=5432, user='postgres', database='test')
    import aiosqlite
    return await aiosqlite.connect(SQLITE_PATH)


async def in_async_transaction(conn, driver, work, commit=True):
    """Await work() in a transaction of the connection, then commit it or roll it back."""
    if driver == 'asyncpg':   # (autocommits unless a transaction is started)
        transaction = conn.transaction()
        await transaction.start()
        result = await work()
        await (transaction.commit() if commit else transaction.rollback())
        return result
    result = await work()
    await (conn.commit() if commit else conn.rollback())
    return result


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_aenqueue_lives_and_dies_with_the_callers_transaction_on_every_asyncio_driver(db, reg):
    import asyncio
    send = reg.task(name='mail', unique_while_dead=True)(lambda to: None)

    async def scenario(driver):
        conn = await async_connect(driver)
        try:
            def one(*args, commit=True, **options):
                return in_async_transaction(conn, driver, lambda: reg.aenqueue(conn, 'mail', *args, **options), commit)
            with pytest.raises(mqueue.MQueueError, match='is an asyncio connection: await aenqueue'):
                reg.enqueue(conn, 'mail', ['z@x'])
            return (await one(['a@x'], commit=False), await one(['b@x'], delay=60),
                    await one(['c@x'], unique='k'), await one(['d@x'], unique='k'),
                    await in_async_transaction(conn, driver, lambda: reg.aenqueue_many(conn, 'mail', [['e@x'], ['f@x']])),
                    await in_async_transaction(conn, driver, lambda: send.aenqueue_with(['g@x'], connection=conn)))
        finally:
            closing = conn.close()   # (aiomysql's close is not a coroutine)
            if inspect.isawaitable(closing):
                await closing
    for driver in ASYNC_DRIVERS[B.dialect.name]:
        rolled_back, later, keyed, again, many, through_task = asyncio.run(scenario(driver))
        rows = {row['id']: row for row in tasks_in(db, reg)}
        assert rolled_back and '["a@x"]' not in [row['args'] for row in rows.values()], driver   # (SQLite reuses its id)
        assert rows[later]['args'] == '["b@x"]'
        assert 55 < seconds_until_eta(db, reg, later) <= 60
        assert keyed.created and not again.created and again == keyed and rows[keyed]['unique_key'] == 'k'
        assert many == 2 and rows[through_task]['args'] == '["g@x"]' and len(rows) == 5
        query(db, f'DELETE FROM {reg.table}')


def test_an_async_task_runs_in_its_transaction_and_a_timeout_cancels_it(db, reg, ledger):
    """An async def task runs to completion in its worker thread's event loop, with current(): its
    writes through the task's connection commit with its completion and roll back with its
    failure; past its timeout it is cancelled where it awaits, and the worker carries on."""
    import asyncio

    @reg.task(name='greet', result=60)
    async def greet(n):
        await asyncio.sleep(0)
        write_ledger(ledger, f'async {n}')   # (the task's connection is a plain one: called, not awaited)
        await reg.aenqueue(mqueue.current().connection, 'follow', [n], delay=3600)   # in its transaction too
        if n < 0:
            raise ValueError('negative')
        return {'id': mqueue.current().id, 'n': n}

    @reg.task(name='wait', timeout=0.5, backoff=60)
    async def wait():
        write_ledger(ledger, 'waiting')
        asyncio.get_running_loop().create_task(left_running())   # never awaited: cancelled when the task ends
        await asyncio.sleep(60)
    cancelled = []

    async def left_running():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(mqueue.current().id)
            raise
    ok, bad, waiting = enqueued(reg, 'greet', [1]), enqueued(reg, 'greet', [-1]), enqueued(reg, 'wait')
    began = time.monotonic()
    w = worker(reg)
    assert w.run(burst=True) == 3
    assert time.monotonic() - began < 10   # the waiting task cancelled at its timeout: no give-up, no minute
    assert query(db, f'SELECT task_id, note FROM {ledger}') == ((ok, 'async 1'),)
    assert reg.result(db, ok).value == {'id': ok, 'n': 1}
    rows = {row['id']: row for row in tasks_in(db, reg)}
    assert rows[bad]['last_error'].startswith('ValueError: negative') and rows[bad]['retries'] == 1
    assert last_error_type(rows[waiting]) == 'mqueue.TaskTimeout' and rows[waiting]['claimed_at'] is None
    assert w._given_up is None
    assert [row['args'] for row in rows.values() if row['name'] == 'follow'] == ['[1]']   # the failed one's rolled back
    assert cancelled == [waiting]


@only('mysql', 'postgresql')
def test_a_timeout_ends_the_session_of_a_transaction_hooks_connection(db, reg):
    enqueue_a_task_that_hangs_in_the_database(reg)
    began = time.monotonic()
    # as an application's hook: a connection of its own each time, which the worker knows nothing of
    transaction = functools.partial(mqueue._transaction, connect)
    assert mqueue.Worker(None, registry=reg, hooks={'transaction': transaction}).run_once() == 1
    row = wait_for(lambda: (row := tasks_in(db, reg)[0])['claimed_at'] is None and row)
    assert last_error_type(row) == 'mqueue.TaskTimeout' and time.monotonic() - began < 10


def test_a_timeout_needs_a_connection_factory_where_it_ends_sessions(db, reg):
    enqueue_a_task_that_hangs_in_the_database(reg)
    conn = connect()
    try:
        if B.dialect.kill:   # refused before any task is claimed
            with pytest.raises(ValueError, match='give the worker a connection factory'):
                mqueue.Worker(conn, registry=reg, timeout=5)
            with pytest.raises(ValueError, match='give the worker a connection factory'):
                mqueue.Worker(conn, registry=reg)   # (its task has a timeout)
            assert tasks_in(db, reg)[0]['retries'] == 0
        else:   # SQLite ends the task's statements on its own connection, and records the timeout on it
            w = mqueue.Worker(conn, registry=reg, timeout=5)
            assert w.run_once() == 1
            row = tasks_in(db, reg)[0]
            assert row['claimed_at'] is None and row['retries'] == 1 and last_error_type(row) == 'mqueue.TaskTimeout'
    finally:
        conn.close()


@only('sqlite')
def test_a_sqlite_task_past_its_timeout_cannot_write_any_more_in_its_transaction(db, reg, ledger):
    """SQLite fails every statement of a task past its timeout that runs long enough (a thousand
    steps), and rolls its transaction back: writes before and after are gone."""
    seen = []

    @reg.task(name='stubborn', timeout=0.5, retries=0)
    def stubborn():
        write_ledger(ledger, 'before')
        with cursor_of(mqueue.current().connection) as cursor:
            for _ in range(2):   # catches the interruption, writes, and starts another long statement
                try:
                    cursor.execute(BLOCKING_SQL['sqlite'])   # (a read: its transaction survives the interruption)
                except sqlite3.OperationalError as exc:
                    seen.append(str(exc))
                write_ledger(ledger, 'after')
        return 'done'
    enqueued(reg, 'stubborn')
    assert worker(reg).run_once() == 1
    assert seen == ['interrupted', 'interrupted']
    assert query(db, f'SELECT COUNT(*) FROM {ledger}') == ((0,),)
    assert last_error_type(tasks_in(db, reg)[0]) == 'mqueue.TaskTimeout'   # dead, whatever it returned


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_cli_worker_with_a_timeout_exits_with_an_error_when_a_task_never_returns(db, reg, tmp_path):
    (tmp_path / 'spinning.py').write_text(textwrap.dedent('''\
        import mqueue

        @mqueue.task(name='spin', retries=1)
        def spin():
            while True:
                pass
        '''))
    task_id = enqueued(reg, 'spin')
    began = time.monotonic()
    child = subprocess.run([sys.executable, '-m', 'mqueue', 'worker', '--db', B.url, '--table', reg.table,
                            '--tasks', 'spinning', '--timeout', '1', '--log-level', 'WARNING'],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           env={**os.environ, 'PYTHONPATH': f'{tmp_path}{os.pathsep}{ROOT}'})
    assert child.returncode == 1, child.stderr
    assert 1 + mqueue.TIMEOUT_GRACE <= time.monotonic() - began < 30
    last_line = child.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf'mqueue: task {task_id} spin \(queue default\) attempt 1 ran past its timeout of 1s and did '
                        r'not return within 5s .*', last_line), child.stderr
    row = tasks_in(db, reg)[0]
    if B.dialect.kill:
        assert row['claimed_at'] is None and last_error_type(row) == 'mqueue.TaskTimeout'
    else:   # its worker's exit let go of the write lock; a rescue brings the task back (its worker is gone)
        assert row['claimed_at'] is not None and mqueue._process_alive(row['worker']) is False
        enqueued(reg, 'after')


def test_status_lists_the_running_tasks_past_their_timeout(db, reg, ledger, tmp_path, capsys):
    task_id = enqueued(reg, 'slow')
    child = spawn(spec_for(reg, ledger, tmp_path, timeout=1, retries=0))
    try:
        wait_for(lambda: list(tmp_path.glob('started-*')))
        os.kill(child.pid, signal.SIGSTOP)   # a worker that cannot act: paused, or hung in code that holds the GIL
        (overdue,) = wait_for(lambda: reg.past_timeout(db), timeout=15)
        assert (overdue.id, overdue.queue, overdue.name) == (task_id, 'default', 'slow')
        assert f':{child.pid}:' in overdue.worker and overdue.overdue > 0
        assert 0.9 <= (overdue.deadline - overdue.claimed_at).total_seconds() <= 1.1   # alone: its timeout from its claim
        # (both table names: on SQLite a command first creates those of its tables that are missing, and
        # that write would wait for the paused worker's transaction)
        status, out, err = cli('status', '--db', B.url, '--table', reg.table, '--cron-table', reg.cron_table,
                               capsys=capsys)
        assert status == 0 and '1 running task past the timeout' in out, (out, err)
        assert re.search(rf'^ *{task_id} +default +slow +\S+:{child.pid}:\S+ +\d{{4}}-', out, re.M), out
        status, out, _ = cli('status', '--db', B.url, '--table', reg.table, '--cron-table', reg.cron_table, '--json',
                             capsys=capsys)
        (queue,) = json.loads(out)
        assert [task['id'] for task in queue['past_timeout']] == [task_id] and queue['running'] == 1
        assert reg.past_timeout(db, queue='other') == []
    finally:
        child.kill()
        child.wait()


# Worker: crashes, connections, signals ###########################################################


CHILD = """
import sys, json
sys.path.insert(0, {root!r})
import test_mqueue
sys.exit(test_mqueue.child_worker(json.loads(sys.argv[1])))
"""


def child_worker(spec):
    """A worker process for the tests: tasks per spec, run until done or signalled."""
    global B
    logging.basicConfig(level=spec.get('log_level', 'WARNING'), stream=sys.stdout)
    B = BACKENDS[spec['backend']]
    reg = mqueue.Registry(table=spec['table'], cron_table=spec['cron_table'])
    marks = Path(spec.get('marks', '.'))

    @reg.task(name='record', retries=spec.get('retries', 3), backoff=0)
    def record(n):
        with open(spec['runlog'], 'a') as log:
            log.write(f'{mqueue.current().id}\n')
        write_ledger(spec['ledger'])

    @reg.task(name='slow', retries=spec.get('retries', 3), backoff=0)
    def slow():
        write_ledger(spec['ledger'], f'pid {os.getpid()}')
        (marks / f'started-{mqueue.current().id}-{mqueue.current().retries}').touch()
        deadline = time.monotonic() + 20
        while not (marks / 'go').exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    @reg.task(name='crash', retries=spec.get('retries', 3), backoff=0)
    def crash(how='exit'):
        (marks / f'crash-{mqueue.current().retries}').touch()
        if how == 'segfault':
            import ctypes
            ctypes.string_at(0)      # SIGSEGV: the process dies in C, no Python handler runs
        os._exit(3)
    def gated_connect():   # connecting takes as long as the test wants: a slow network, a busy server
        (marks / 'connecting').touch()
        deadline = time.monotonic() + 20
        while not (marks / 'connect').exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return connect()
    w = mqueue.Worker(gated_connect if spec.get('gated_connect') else connect, registry=reg,
                      concurrency=spec.get('concurrency', 1), batch=spec.get('batch', 1),
                      lease=spec.get('lease', 60), rescue_after=spec.get('rescue_after', mqueue.DEFAULT_RESCUE_AFTER),
                      poll_interval=spec.get('poll_interval', 0.01), timeout=spec.get('timeout'))
    try:
        w.run(burst=spec.get('burst', False))
    except KeyboardInterrupt as exc:
        return 128 + exc.args[0]
    return 0


def spawn(spec):
    return subprocess.Popen([sys.executable, '-c', CHILD.format(root=str(ROOT)), json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def spec_for(reg, ledger, tmp_path, **extra):
    spec = dict(backend=B.name, table=reg.table, cron_table=reg.cron_table, ledger=ledger, marks=str(tmp_path),
                runlog=str(tmp_path / 'runlog'))
    spec.update(extra)
    return spec


def test_two_processes_with_threads_never_run_a_task_twice(db, reg, ledger, tmp_path):
    n = 3000
    conn = connect()
    with cursor_of(conn) as cursor:
        cursor.executemany(f"INSERT INTO {reg.table} (args, eta, name, queue) VALUES (%s, {B.now}, "
                           f"'record', 'default')", [(json.dumps([i]),) for i in range(n)])
    conn.commit()
    conn.close()
    children = [spawn(spec_for(reg, ledger, tmp_path, concurrency=3, burst=True, batch=mqueue.DEFAULT_BATCH,
                               runlog=str(tmp_path / f'run{i}')))
                for i in range(2)]
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0, out
    logs = [tmp_path / f'run{i}' for i in range(2)]
    runs = [line for log in logs if log.exists() for line in log.read_text().split()]
    assert len(runs) == n and len(set(runs)) == n          # every task started exactly once
    if B.dialect.name != 'sqlite':   # (SQLite has one writer: the first process may take them all)
        assert all(log.exists() for log in logs)          # both processes took a share
    assert query(db, f'SELECT COUNT(*), COUNT(DISTINCT task_id) FROM {ledger}')[0] == (n, n)
    assert tasks_in(db, reg) == []


def test_a_sigkilled_workers_task_runs_again_within_seconds(db, reg, ledger, tmp_path):
    """By default (a 60 s lease): the dead worker's transaction went with its connection, so no
    lock holds the claimed row (SQLite: the process its row names has ended), and another worker
    rescues it about rescue_after (2 s) later."""
    task_id = enqueued(reg, 'slow', [])
    victim = spawn(spec_for(reg, ledger, tmp_path, poll_interval=0.5))
    wait_for(lambda: list(tmp_path.glob('started-*-0')))
    victim.kill()
    killed = time.monotonic()
    victim.wait(10)
    (tmp_path / 'go').touch()
    rescuer = spawn(spec_for(reg, ledger, tmp_path, poll_interval=0.5))   # a process started from cold
    try:
        wait_for(lambda: not tasks_in(db, reg), timeout=10)
        back_in = time.monotonic() - killed
    finally:
        rescuer.send_signal(signal.SIGTERM)
        out, _ = rescuer.communicate(timeout=10)
    assert back_in < 5, back_in
    assert query(db, f'SELECT task_id FROM {ledger}') == ((task_id,),)   # the killed attempt's write rolled back
    assert (tmp_path / f'started-{task_id}-1').exists()                  # its second attempt, counted
    assert f'task {task_id} slow (queue default) attempt 1 was left unfinished: its worker died' in out


@pytest.mark.parametrize('rescue_after', [mqueue.DEFAULT_RESCUE_AFTER, None])
def test_a_task_running_ten_leases_is_never_started_twice_and_counts_as_running(db, reg, rescue_after):
    """Its row lock, not its lease, keeps it: idle workers probing beside it (past its lease, and
    past rescue_after) never claim it, and on MySQL/PostgreSQL send one statement per poll."""
    lease, starts, release = 0.3, [], threading.Event()

    @reg.task(name='long')
    def long_task():
        starts.append(time.monotonic())
        release.wait(10 * lease + 2)          # ten leases, and past rescue_after
    sent: list[str] = []
    idle = [recording_worker(reg, sent, lease=lease, rescue_after=rescue_after, poll_interval=0.05)
            for _ in range(2)]
    running = worker(reg, lease=lease, rescue_after=rescue_after)
    enqueued(reg, 'long', [])
    threads, window_opened = [run_in_thread(running)], False
    try:
        wait_for(lambda: starts)
        threads += [run_in_thread(w) for w in idle]
        counts, began = [], starts[0]
        with committed() as conn:
            while time.monotonic() < began + 12 * lease:
                counts.append([row.running for row in reg.queue_stats(conn)])
                conn.rollback()
                if not window_opened and time.monotonic() > began + mqueue.DEFAULT_RESCUE_AFTER + lease:
                    del sent[:]   # past the lease and rescue_after: count the idle workers' statements
                    window_opened = True
                time.sleep(0.05)
        window = list(sent)
        release.set()
        wait_for(lambda: not tasks_in(db, reg))
    finally:
        release.set()
        for w in (running, *idle):
            w.stop()
        for thread in threads:
            thread.join(10)
    assert len(starts) == 1, starts                        # never started twice
    assert counts and all(count == [1] for count in counts), counts   # RUNNING all along
    # (without a rescue, a claim past its lease may be a dead worker's, so idle workers try to
    # claim it; on SQLite, one writer, a worker claiming while a batch runs waits for its commit)
    if B.dialect.row_locks and rescue_after is not None:
        probe = mqueue.SQL_PROBE.split(' {task}')[0]   # (its blocks joined with the rescue's look)
        polls = [sql for sql in window if probe in sql]
        others = [sql for sql in window if probe not in sql and not sql.startswith('SELECT MIN(priority)')]
        assert len(polls) >= 10 and others == [], others   # one statement per poll: no claim, no commit


def test_a_sigkilled_workers_task_comes_back_after_the_lease(db, reg, ledger, tmp_path):
    """Without a rescue (rescue_after=None, as on a Galera cluster): after the lease."""
    task_id = enqueued(reg, 'slow', [])
    child = spawn(spec_for(reg, ledger, tmp_path, lease=1, rescue_after=None))
    wait_for(lambda: list(tmp_path.glob('started-*-0')))
    child.kill()
    child.wait(10)
    row, = tasks_in(db, reg)
    assert row['retries'] == 1 and row['dead_at'] is None   # the attempt was counted at claim
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0
    (tmp_path / 'go').touch()
    child = spawn(spec_for(reg, ledger, tmp_path, lease=1, rescue_after=None))
    wait_for(lambda: not tasks_in(db, reg))
    child.send_signal(signal.SIGTERM)
    assert child.wait(10) == 0
    assert query(db, f'SELECT task_id FROM {ledger}') == ((task_id,),)


@pytest.mark.parametrize('how', ['exit', 'segfault'])
def test_a_task_that_kills_its_worker_every_time_ends_dead(db, reg, ledger, tmp_path, how):
    with committed() as conn:
        reg.enqueue(conn, 'crash', [how])
        reg.enqueue(conn, 'record', [1], delay=0.5)
    for _ in range(10):   # a supervisor restarting the worker each time it dies
        child = spawn(spec_for(reg, ledger, tmp_path, lease=0.2, retries=2, burst=True))
        child.communicate(timeout=60)
        if child.returncode == 0 and not [r for r in tasks_in(db, reg) if r['dead_at'] is None]:
            break
        time.sleep(0.2)   # the lease: the crashed attempt is hidden for 0.2 s
    row, = tasks_in(db, reg)
    assert row['name'] == 'crash' and row['dead_at'] is not None and row['retries'] == 3
    assert 'Lost: all 3 attempts were begun' in row['last_error']
    assert sorted(p.name for p in tmp_path.glob('crash-*')) == ['crash-0', 'crash-1', 'crash-2']
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 1   # the other task still ran


def test_a_crashing_task_does_not_use_up_its_batch_mates_attempts(db, reg, ledger, tmp_path):
    with committed() as conn:
        reg.enqueue(conn, 'record', [1], priority=-1)
        reg.enqueue(conn, 'crash', [])
        reg.enqueue(conn, 'record', [2], priority=1)
    for _ in range(15):
        child = spawn(spec_for(reg, ledger, tmp_path, lease=0.2, retries=2, burst=True, batch=3))
        child.communicate(timeout=60)
        if child.returncode == 0 and not [r for r in tasks_in(db, reg) if r['dead_at'] is None]:
            break
        time.sleep(0.2)
    row, = tasks_in(db, reg)
    assert row['name'] == 'crash' and 'Lost' in row['last_error']
    assert query(db, f'SELECT COUNT(*), COUNT(DISTINCT task_id) FROM {ledger}')[0] == (2, 2)


@contextlib.contextmanager
def a_running_task(reg, **worker_options):
    """A worker thread in the middle of task 'hold' (holding its claim) while the block runs;
    yields a fresh connection of the test's."""
    started, proceed = threading.Event(), threading.Event()

    @reg.task(name='hold')
    def hold():
        started.set()
        assert proceed.wait(30)
    conn = connect()
    reg.enqueue(conn, 'hold', [])
    conn.commit()
    thread = threading.Thread(target=worker(reg, **worker_options).run_once)
    thread.start()
    try:
        assert started.wait(10)
        yield conn
    finally:
        proceed.set()
        thread.join(10)
        conn.close()


@only('sqlite')
def test_sqlite_runs_one_task_at_a_time_and_writers_wait_for_it(db, reg):
    """SQLite's concurrency, as docs/databases.md says: a running task holds the database's write
    lock, so an enqueue (any write) waits for its commit, up to the writer's busy timeout; reads do
    not wait."""
    with a_running_task(reg) as conn:
        conn.close()
        hurried = mqueue.connect_url(B.url)()
        query(hurried, 'PRAGMA busy_timeout = 200')
        assert len(tasks_in(hurried, reg)) == 1                      # WAL: reading does not wait
        with pytest.raises(Exception, match='database is locked'):
            reg.enqueue(hurried, 'hold', [])                        # writing waits, here 0.2 s
        hurried.rollback()
        result = {}

        def enqueue_patiently():                                     # mqueue's URL connections wait 30 s
            patient = mqueue.connect_url(B.url)()
            result['id'] = reg.enqueue(patient, 'hold', [])
            patient.commit()
            patient.close()
        enqueuing = threading.Thread(target=enqueue_patiently)
        enqueuing.start()
        enqueuing.join(0.3)
        assert enqueuing.is_alive()                                  # still waiting for the task's commit
    enqueuing.join(10)                                               # the task finished: the write goes in
    hurried.close()
    assert result['id'] and [r['id'] for r in tasks_in(db, reg)] == [result['id']]


@only('sqlite')
@pytest.mark.parametrize('own_level', [2, 0])
def test_sqlite_claims_commit_without_the_disk_and_tasks_at_the_connections_own_level(db, reg, own_level):
    """The claim's transaction begins at synchronous NORMAL (in WAL mode its commit does not wait
    for the disk), the batch's, which holds the tasks' writes, at the connection's own level: FULL
    by default, and a lower one left as the application set it (no PRAGMA sent then)."""
    levels, sent = [], []

    @reg.task(name='level')
    def level():
        levels.append(query(mqueue.current().connection, 'PRAGMA synchronous')[0][0])

    class Recording:   # the worker's connection and cursors, recording what they send
        def __init__(self, inner):
            object.__setattr__(self, 'inner', inner)

        def cursor(self):
            return Recording(self.inner.cursor())

        def execute(self, sql, *args):
            sent.append(sql)
            return self.inner.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __setattr__(self, name, value):   # isolation_level: sqlite3's
            setattr(self.inner, name, value)

    def connect():
        conn = mqueue.connect_url(B.url)()
        conn.execute(f'PRAGMA synchronous = {own_level}')
        return Recording(conn)
    reg.dialect = B.dialect   # (the wrapper hides the driver)
    for _ in range(2):
        enqueued(reg, 'level')
    assert mqueue.Worker(connect, registry=reg, batch=1, crons=False).run(burst=True) == 2
    assert levels == [own_level] * 2
    switches = [sql for sql in sent if sql.startswith('PRAGMA synchronous =')]
    if own_level == 2:   # NORMAL before each claim, FULL again before each batch: claim, batch, claim, batch, claim
        assert switches == ['PRAGMA synchronous = 1', 'PRAGMA synchronous = 2'] * 2 + ['PRAGMA synchronous = 1']
        def level_at(start):   # the level set last before each statement that starts so
            return [next(sql for sql in reversed(sent[:i]) if sql.startswith('PRAGMA synchronous ='))[-1]
                    for i, sql in enumerate(sent) if sql.startswith(start)]
        assert level_at('SELECT id, name, args') == ['1'] * 3 and level_at('SELECT id, retries') == ['2'] * 2
    else:
        assert switches == []


@only('mysql', 'postgresql')
@pytest.mark.parametrize('isolation', ['READ COMMITTED', 'REPEATABLE READ'])
def test_enqueue_never_waits_on_a_running_task(db, reg, isolation):
    with a_running_task(reg, isolation=isolation) as conn:
        with cursor_of(conn) as cursor:
            B.lock_timeout(cursor, 5)
        now = dt.datetime.now(UTC)
        for options in ({}, {'eta': now - dt.timedelta(days=1)}, {'eta': now + dt.timedelta(days=1)},
                        {'priority': -100}, {'priority': 100}, {'delay': 0.001}, {'queue': 'other'}):
            began = time.monotonic()
            reg.enqueue(conn, 'hold', [], **options)
            conn.commit()
            assert time.monotonic() - began < 1.0, options
    assert len(tasks_in(db, reg)) == 7


@only('mysql', 'postgresql')   # SQLite has no server to drop a connection
def test_a_killed_connection_is_replaced_and_the_task_runs_again(db, reg, ledger, caplog):
    caplog.set_level(logging.INFO, logger='mqueue')
    connection_ids, proceed, second = [], threading.Event(), threading.Event()

    @reg.task(name='k', backoff=0)
    def k():
        context = mqueue.current()
        write_ledger(ledger, f'attempt {context.retries + 1}')
        if context.retries == 0:
            with cursor_of(context.connection) as cursor:
                connection_ids.append(B.connection_id(cursor))
            assert proceed.wait(10)
        else:
            second.set()
    task_id = enqueued(reg, 'k', [])
    w = worker(reg, lease=1)
    thread = run_in_thread(w)
    try:
        wait_for(lambda: connection_ids)
        B.kill(db, connection_ids[0])               # the server drops the worker mid-task
        proceed.set()
        assert second.wait(20)                      # reconnected, and the task came back after the lease
        wait_for(lambda: not tasks_in(db, reg))
    finally:
        w.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert query(db, f'SELECT task_id, note FROM {ledger}') == ((task_id, 'attempt 2'),)
    # the lost connection is found when the savepoint cannot be released: a failed attempt
    lost = {'mysql': r'Lost connection', 'postgresql': r'terminat|closed the connection'}[B.dialect.name]
    assert any(re.search(lost, r.getMessage()) for r in caplog.records if r.name == 'mqueue')
    row_errors = [r.getMessage() for r in caplog.records if 'TransactionLost' in r.getMessage()]
    assert row_errors and 'attempt 1 failed' in row_errors[0]
    assert any(r.getMessage().startswith(f'reconnected to {B.dialect.name} ') for r in caplog.records)


@only('mysql', 'postgresql')
def test_a_batch_whose_connection_is_lost_while_its_tasks_never_read_it_runs_again(db, reg):
    """No task took a savepoint, so nothing notices the loss until the batch's next statement,
    after its tasks ran: the batch fails, and its tasks come back (the dead connection's claims
    rescued) and run again, none lost, none buried."""
    runs = []

    @reg.task(name='n', retries=1)
    def n(label):
        runs.append(label)
        if label == 'killer' and runs.count('killer') == 1:   # ends the worker's session, as an admin would
            B.kill(db, mqueue.current().worker._local.connection_id)
    with committed() as conn:
        for label in ('killer', 'second', 'third'):
            reg.enqueue(conn, 'n', [label])
    w = worker(reg, batch=3, rescue_after=0.2, crons=False)
    thread = run_in_thread(w)
    try:
        wait_for(lambda: not tasks_in(db, reg), timeout=20)
    finally:
        w.stop()
        thread.join(10)
    assert sorted(runs) == ['killer', 'killer', 'second', 'second', 'third', 'third']


@only('mysql', 'postgresql')
def test_a_task_that_loses_its_transaction_is_recorded_and_its_batch_handed_back(db, reg, ledger):
    """Batch of three; the second task's connection is killed under it, which takes the whole
    transaction (and its savepoint) with it. The failure is recorded on a new connection and
    the other two are handed back uncounted: the first one's writes were lost with the batch."""
    ran = []

    @reg.task(name='b', retries=1, backoff=0)
    def b(label):
        context = mqueue.current()
        ran.append((label, context.retries))
        write_ledger(ledger, label)
        if label == 'killer' and context.retries == 0:
            with cursor_of(context.connection) as cursor:
                B.kill(db, B.connection_id(cursor))
                cursor.execute('SELECT 1')      # raises: the connection is gone
    with committed() as conn:
        first, killer, third = (reg.enqueue(conn, 'b', [label]) for label in ('first', 'killer', 'third'))
    w = worker(reg, batch=3)
    assert w.run_once() == 3
    assert ran == [('first', 0), ('killer', 0)]
    rows = {r['id']: r for r in tasks_in(db, reg)}
    assert (rows[first]['retries'], rows[third]['retries'], rows[killer]['retries']) == (0, 0, 1)
    assert rows[first]['last_error'] is None
    assert re.match(r'(OperationalError|AdminShutdown|InterfaceError)', rows[killer]['last_error'])
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0
    assert w.run(burst=True) == 3
    assert sorted(ran[2:]) == [('first', 0), ('killer', 1), ('third', 0)]
    assert sorted(n for n, in query(db, f'SELECT note FROM {ledger}')) == ['first', 'killer', 'third']
    assert tasks_in(db, reg) == []


def soak_module():
    """bench/soak.py, on the suite's MariaDB (it, and the workers it spawns, read the URL at import)."""
    os.environ['MQUEUE_DATABASE_URL'] = BACKENDS['mariadb-pymysql'].url
    sys.path.insert(0, str(ROOT / 'bench'))
    import soak
    assert soak.URL == BACKENDS['mariadb-pymysql'].url
    return soak


@only('mysql')
@pytest.mark.restarts_server   # (in a phase of its own: see pyproject's addopts and ./test)
def test_a_restarted_server_is_waited_for_and_nothing_is_lost(db, reg, ledger):
    if not os.path.exists(soak_module().MARIADBD) or DB['host'] not in ('127.0.0.1', 'localhost'):
        pytest.skip('restarts the local MariaDB server; needs /usr/sbin/mariadbd')
    n, halfway = 60, threading.Event()

    @reg.task(name='r')
    def r(i):
        write_ledger(ledger)
        if i == n // 2:
            halfway.set()
        time.sleep(0.02)
    conn = connect()
    for i in range(n):
        reg.enqueue(conn, 'r', [i])
    conn.commit()
    conn.close()
    w = worker(reg, lease=1)
    thread = run_in_thread(w)
    try:
        assert halfway.wait(20)
        soak_module().restart_server(connect)
        db = connect(autocommit=True)
        wait_for(lambda: not tasks_in(db, reg), timeout=60, interval=0.1)
    finally:
        w.stop()
        thread.join(20)
    assert not thread.is_alive()
    assert query(db, f'SELECT COUNT(*), COUNT(DISTINCT task_id) FROM {ledger}')[0] == (n, n)


def test_a_task_that_rolls_back_or_commits_the_workers_transaction_is_caught(db, reg, ledger):
    @reg.task(name='ok')
    def ok():
        write_ledger(ledger, 'ok')

    @reg.task(name='meddler', retries=1, backoff=0)
    def meddler(action):
        context = mqueue.current()
        write_ledger(ledger, f'{action} {context.retries}')
        if context.retries == 0:
            getattr(context.connection, action)()     # ends the worker's transaction under it
            write_ledger(ledger, f'after {action}')
    conn = connect()
    ok_id = reg.enqueue(conn, 'ok', [])
    rollback_id = reg.enqueue(conn, 'meddler', ['rollback'])
    conn.commit()
    assert worker(reg, batch=2).run_once() == 2
    # Which task of the batch did it is unknown: both get the failure, due at once, and as retried
    # tasks they next run alone, where the culprit shows. ok's write went with the rollback.
    rows = {r['id']: r for r in tasks_in(db, reg)}
    for task_id in (ok_id, rollback_id):
        assert rows[task_id]['retries'] == 1 and rows[task_id]['last_error'].startswith('TransactionLost: a task')
    # (On SQLite a statement outside BEGIN autocommits: the write after its rollback stays.)
    after = ['after rollback'] if B.dialect.name == 'sqlite' else []
    assert [n for n, in query(db, f'SELECT note FROM {ledger}')] == after
    assert worker(reg).run(burst=True) == 2
    assert sorted(n for n, in query(db, f'SELECT note FROM {ledger}')) == sorted(after + ['ok', 'rollback 1'])

    commit_id = reg.enqueue(conn, 'meddler', ['commit'])
    conn.commit()
    conn.close()
    assert worker(reg).run_once() == 1
    row, = tasks_in(db, reg)
    assert row['id'] == commit_id and 'TransactionLost' in row['last_error'] and row['retries'] == 1
    # what it committed itself stays committed (its bug, now reported); the rest rolled back
    assert query(db, f"SELECT COUNT(*) FROM {ledger} WHERE note IN ('commit 0', 'after commit')")[0][0] == 1 + len(after)


@only('mysql', 'postgresql')   # SQLite runs one task at a time: no two can deadlock
def test_two_tasks_that_deadlock_each_other_both_complete_uncounted(db, reg, ledger, caplog):
    caplog.set_level(logging.INFO, logger='mqueue')   # the conflicts' messages, should the count be off
    query(db, f"INSERT INTO {ledger} (id, note) VALUES (1001, 'one'), (1002, 'two')")   # (clear of the ids to come)
    both_hold_one = threading.Barrier(2, timeout=10)
    first_time = {'a', 'b'}
    failures = []

    @reg.task(name='swap')
    def swap(label, first, second):
        with cursor_of(mqueue.current().connection) as cursor:
            cursor.execute(f'SELECT note FROM {ledger} WHERE id = %s FOR UPDATE', (first,))
            cursor.fetchall()   # (mysql-connector's cursors are unbuffered: a result must be read)
            if label in first_time:
                first_time.discard(label)
                both_hold_one.wait()
            cursor.execute(f'SELECT note FROM {ledger} WHERE id = %s FOR UPDATE', (second,))   # one of them: 1213
            cursor.fetchall()
            cursor.execute(f'INSERT INTO {ledger} (task_id, note) VALUES (%s, %s)', (mqueue.current().id, label))
    with committed() as conn:
        reg.enqueue(conn, 'swap', ['a', 1001, 1002])
        reg.enqueue(conn, 'swap', ['b', 1002, 1001])
    hooks = {'task_failed': lambda context, **info: failures.append(info['error'])}
    workers = [worker(reg, hooks=hooks) for _ in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={'burst': True}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert tasks_in(db, reg) == [] and failures == []          # not the tasks' failure
    assert sorted(n for n, in query(db, f'SELECT note FROM {ledger} WHERE task_id IS NOT NULL')) == ['a', 'b']
    conflicts = [r.getMessage()[:300] for r in caplog.records if 'lock conflict' in r.getMessage()
                 or 'deadlock' in r.getMessage()]
    assert sum(w.stats['lock_conflicts'] for w in workers) == 1, conflicts   # (a rare 2 on PostgreSQL: which?)


@only('mysql', 'postgresql')
def test_a_lock_wait_timeout_in_a_task_runs_it_again_uncounted(db, reg, ledger):
    query(db, f"INSERT INTO {ledger} (id, note) VALUES (1, 'held')")
    holder = connect()
    with cursor_of(holder) as cursor:
        cursor.execute(f'SELECT note FROM {ledger} WHERE id = 1 FOR UPDATE')   # an app holding a row
        cursor.fetchall()
    attempts, failures = [], []

    @reg.task(name='waits')
    def waits():
        attempts.append(mqueue.current().retries)
        with cursor_of(mqueue.current().connection) as cursor:
            B.lock_timeout(cursor, 1)
            cursor.execute(f'SELECT note FROM {ledger} WHERE id = 1 FOR UPDATE')   # times out while held
            cursor.fetchall()
        if len(attempts) == 1:
            raise AssertionError('the first attempt should have timed out')
    enqueued(reg, 'waits', [])
    w = worker(reg, hooks={'task_failed': lambda context, error, **info: failures.append(error)})
    try:
        assert w.run_once() == 1                  # timed out: handed back, uncounted, due at once
        row, = tasks_in(db, reg)
        assert row['retries'] == 0 and row['last_error'] is None and w.stats['lock_conflicts'] == 1
    finally:   # even if that failed: a holder left open would keep the ledger's DROP waiting for ever
        holder.rollback()
        holder.close()
    assert w.run(burst=True) == 1 and tasks_in(db, reg) == []
    assert attempts == [0, 0] and failures == []


def test_a_task_running_past_its_lease_is_never_run_twice(db, reg):
    runs = []

    @reg.task(name='long')
    def long_task(n):
        runs.append((n, 'start', time.monotonic()))
        time.sleep(0.4)                      # several leases long
        runs.append((n, 'end', time.monotonic()))
    conn = connect()
    for n in range(4):
        reg.enqueue(conn, 'long', [n])
    conn.commit()
    conn.close()
    workers = [worker(reg, lease=0.05) for _ in range(3)]
    threads = [threading.Thread(target=w.run, kwargs={'burst': True}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    starts = [n for n, what, _ in runs if what == 'start']
    assert sorted(starts) == [0, 1, 2, 3] and tasks_in(db, reg) == []


def test_several_queues_are_claimed_by_index_without_blocking_each_other(db, reg):
    conn = connect()
    for i in range(40):
        reg.enqueue(conn, 'x', [i], queue=('a', 'b')[i % 2], priority=i % 3)
    conn.commit()
    conn.close()
    w = worker(reg, queues=['a', 'b'], batch=3)
    w.dialect = B.dialect
    first, second = connect(), connect()
    try:
        with cursor_of(first) as cursor:
            pairs = w._pairs(cursor)
            assert pairs == [(q, p) for p in range(3) for q in 'ab']     # the priorities in use, found
            if B.dialect.name == 'mysql':
                claim = w._sql(mqueue.SQL_CLAIM)
                union = ' UNION ALL '.join([f'({claim})'] * len(pairs)) + mqueue.SQL_CLAIM_ORDER
                cursor.execute('EXPLAIN ' + union, (*(p for pair in pairs for p in (*pair, 3)), 3))
                plans = cursor.fetchall()
                assert all(p[3] != 'ALL' for p in plans if p[2] == reg.table), plans   # index ranges only
            mine = {row[0] for row in w._claim_due(cursor.cursor, pairs)}
        if B.dialect.name != 'sqlite':   # (SQLite has no row locks: one worker claims at a time)
            with cursor_of(second) as cursor:
                theirs = {row[0] for row in w._claim_due(cursor.cursor, pairs)}
            assert len(mine) == len(theirs) == 3 and not mine & theirs     # the second is not starved
    finally:
        first.rollback(), second.rollback(), first.close(), second.close()
    started = []
    reg.task(name='x')(lambda i: started.append(i % 3))
    assert w.run(burst=True) == 40 and tasks_in(db, reg) == []
    assert started == sorted(started)        # priority orders the tasks across both queues


def crowded_queue(conn, reg, priorities=40):
    """The smallest priorities of the default queue (0 to priorities - 1, more than MAX_PRIORITIES)
    in use by tasks scheduled an hour ahead: they hold rows, none of them due."""
    for priority in range(priorities):
        reg.enqueue(conn, 'record', ['default', priority, 0], priority=priority, delay=3600)


@pytest.mark.parametrize('blocks, batch', [(mqueue.PROBE_BLOCKS, 1), (7, 4)])
def test_a_queue_with_more_than_max_priorities_runs_every_due_task_in_priority_order(db, reg, monkeypatch,
                                                                                    blocks, batch):
    """A worker that looked up only the MAX_PRIORITIES smallest priorities in use never claimed
    from the others while those held any row (here: tasks for later). Every priority is served,
    smallest first, across queues; the claim reads which pairs are due PROBE_BLOCKS at a time (7:
    several reads per claim, and a batch filled from several pairs)."""
    monkeypatch.setattr(mqueue, 'PROBE_BLOCKS', blocks)
    order = []
    reg.task(name='record')(lambda queue, priority, n: order.append((priority, n, queue)))
    with committed() as conn:
        crowded_queue(conn, reg)
        for priority in range(100, 120, 2):   # a due task at each of 10 priorities, and 3 more at 104
            reg.enqueue(conn, 'record', ['default', priority, 0], priority=priority)
        for n in range(1, 4):
            reg.enqueue(conn, 'record', ['default', 104, n], priority=104)
        for priority in (101, 111):           # another queue's, between them
            reg.enqueue(conn, 'record', ['other', priority, 0], queue='other', priority=priority)
    assert mqueue.MAX_PRIORITIES < 40
    assert worker(reg, queues=['default', 'other'], batch=batch).run(burst=True) == 15
    assert order == sorted(order) and len(order) == 15   # in priority order (then eta)
    assert {(p, q) for p, _, q in order} == {(p, 'default') for p in range(100, 120, 2)} | {(101, 'other'),
                                                                                           (111, 'other')}
    left = tasks_in(db, reg)   # the tasks for later stay
    assert sorted(r['priority'] for r in left) == list(range(40)) and all(r['retries'] == 0 for r in left)


def test_a_running_worker_finds_a_task_at_a_priority_past_the_smallest_max_priorities(db, reg, monkeypatch):
    monkeypatch.setattr(mqueue, 'PRIORITY_REFRESH', 0.2)   # looked up again every second while idle
    ran = []
    reg.task(name='record')(lambda queue, priority, n: ran.append(priority))
    with committed() as conn:
        crowded_queue(conn, reg)
    w = worker(reg)
    thread = run_in_thread(w)
    try:
        wait_for(lambda: ('default', 39) in w._priorities, timeout=5)   # it has looked them up, and idles
        enqueued(reg, 'record', ['default', 50, 0], priority=50)       # a priority new to it
        wait_for(lambda: ran == [50], timeout=5)
    finally:
        w.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert len(tasks_in(db, reg)) == 40


def test_a_claim_from_more_than_max_priorities_sends_one_statement_more(db, reg, monkeypatch):
    """Up to MAX_PRIORITIES in a queue, a claim is what it always was; past that, a read of which
    pairs are due comes first, and the claim itself is the same."""
    monkeypatch.setattr(mqueue, 'PRIORITY_REFRESH', 3600.0)   # looked up when the test says
    reg.task(name='record')(lambda queue, priority, n: None)
    with committed() as conn:
        reg.enqueue_many(conn, 'record', [['default', 0, n] for n in range(3)])
        reg.enqueue(conn, 'record', ['default', 1, 0], priority=1, delay=3600)
    w = worker(reg, batch=2, rescue_after=None)
    w.dialect = B.dialect
    sent = []
    conn = RecordingConnection(connect(), sent)

    def claim():
        w._priorities_at = -math.inf
        with cursor_of(conn) as cursor:
            w._pairs(cursor.cursor)
            del sent[:]
            claimed, _ = w._claim_rows(cursor.cursor)
        conn.rollback()
        assert [c.call for c in claimed] == [['default', 0, 0], ['default', 0, 1]]
        return list(sent)
    try:
        few = claim()                    # two priorities in use: the claim of the first, the lease
        with committed() as other:
            crowded_queue(other, reg)    # 40
        crowded = claim()
    finally:
        conn.rollback()
        conn.close()
    assert len(few) == 2 and crowded[1:] == few
    assert crowded[0].count(w._sql(mqueue.SQL_DUE_PAIRS)) == len(w._priorities) == 40   # every pair, one statement


def test_a_priority_found_empty_waits_behind_the_others_only_while_they_fill_the_batch(db, reg, monkeypatch):
    """A (queue, priority) range a claim found empty is tried after the others for
    EMPTY_RANGE_WAIT (here an hour: the test says when it ends), and only if they leave the batch
    short: a task enqueued there meanwhile runs after a batch of the busy priority, never later
    than the next batch those cannot fill."""
    monkeypatch.setattr(mqueue, 'EMPTY_RANGE_WAIT', 3600.0)
    order = []
    reg.task(name='record')(lambda name: order.append(name))
    with committed() as conn:
        reg.enqueue(conn, 'record', ['a'], priority=0)
        reg.enqueue_many(conn, 'record', [[f'b{n}'] for n in range(1, 5)], priority=1)
    w = worker(reg, batch=2, crons=False)
    try:
        assert w.run_once() == 2 and order == ['a', 'b1']   # priority 0 ran dry: found empty
        enqueued(reg, 'record', ['c'], priority=0)
        assert w.run_once() == 2 and order[2:] == ['b2', 'b3']   # priority 1 fills the batch; c waits
        assert w.run_once() == 2 and order[4:] == ['b4', 'c']    # priority 1 leaves it short: c comes in
        enqueued(reg, 'record', ['d'], priority=1)
        enqueued(reg, 'record', ['e'], priority=0)
        monkeypatch.setattr(mqueue, 'EMPTY_RANGE_WAIT', 0.0)    # the wait over: priority order again
        assert w.run_once() == 2 and order[6:] == ['e', 'd']
    finally:
        w._discard_connection()
    assert tasks_in(db, reg) == []


@pytest.mark.parametrize('blocks, statements', [(mqueue.PROBE_BLOCKS, 1), (7, 6)])
def test_the_idle_probe_reads_probe_blocks_pairs_per_statement(db, reg, monkeypatch, blocks, statements):
    """One statement up to PROBE_BLOCKS (queue, priority) pairs (40 here); past that (7), one per
    PROBE_BLOCKS until one finds a task, the rescue's look in the first."""
    monkeypatch.setattr(mqueue, 'PROBE_BLOCKS', blocks)
    reg.task(name='record')(lambda queue, priority, n: None)
    with committed() as conn:
        crowded_queue(conn, reg)     # 40 pairs
    w = worker(reg)
    w.dialect = B.dialect
    sent = []
    w._local.connection = RecordingConnection(connect(autocommit=True), sent)
    orphans = mqueue.SQL_PROBE_ORPHAN.split(',')[0]   # (the rescue's look)

    def probes():   # (not the look-ups of the priorities in use)
        return [sql for sql in sent if not sql.startswith('SELECT MIN(priority)')]
    try:
        with cursor_of(w._local.connection) as cursor:
            assert w._can_rescue(cursor.cursor)   # (known once a claim has asked: the probe then looks too)
        del sent[:]
        assert not w._probe()            # nothing due: every pair read
        assert [orphans in sql for sql in probes()] == [True] + [False] * (statements - 1)
        enqueued(reg, 'record', ['default', 9, 1], priority=9)
        del sent[:]
        assert w._probe()                # due at the 10th pair: found by the first statement, or the second of 7
        assert len(probes()) == min(statements, 2)
    finally:
        w._local.connection.close()


@only('mysql')   # (InnoDB's lock counts)
@pytest.mark.parametrize('isolation', [None, 'READ COMMITTED'])
def test_a_claim_never_reads_or_locks_the_tasks_scheduled_for_later(db, reg, isolation):
    """A claim asking for more rows than are due must stop at the first task not yet due; reading
    on through thousands scheduled for later locked them all and, at a million, crashed MariaDB."""
    query(db, f"INSERT INTO {reg.table} (args, eta, name, queue, priority) SELECT '[]', "
              f"UTC_TIMESTAMP(6) + INTERVAL 1 DAY, 'x', 'default', MOD(seq, 3) FROM seq_1_to_5000")
    reg.task(name='x')(lambda: None)
    conn = connect()
    reg.enqueue_many(conn, 'x', [[] for _ in range(3)])
    reg.enqueue_many(conn, 'x', [[] for _ in range(2)], priority=2)
    conn.commit()
    w = worker(reg, batch=20, isolation=isolation)
    w.dialect = B.dialect
    try:
        with cursor_of(conn) as cursor:
            if isolation:
                cursor.execute(f'SET SESSION TRANSACTION ISOLATION LEVEL {isolation}')
            me = B.connection_id(cursor)
            claimed, _ = w._claim_rows(cursor.cursor)

            def rows_locked():
                cursor.execute('SELECT trx_mysql_thread_id, trx_rows_locked FROM information_schema.innodb_trx')
                return [locked for thread, locked in cursor.fetchall() if thread == me]
            # InnoDB refreshes this table at most every 0.1 s since it was last read: poll slower
            locked, = wait_for(rows_locked, timeout=5, interval=0.25)
    finally:
        conn.rollback()
        conn.close()
    assert [c.task.name for c in claimed] == ['x'] * 5
    assert locked < 40, locked          # the five, their index entries and a boundary each; not 5000


def test_worker_connections_are_set_up_for_long_transactional_tasks(db, reg):
    seen = {}

    settings = {
        'mysql': ('SELECT @@autocommit, @@session.wait_timeout, @@session.tx_isolation, '
                  '@@session.idle_transaction_timeout', (0, 31536000, 'REPEATABLE-READ', 0)),
        'postgresql': ("SELECT current_setting('transaction_isolation'), "
                       "current_setting('idle_in_transaction_session_timeout')", ('read committed', '0')),
        'sqlite': ('SELECT * FROM pragma_journal_mode, pragma_busy_timeout', ('wal', 30000)),
    }[B.dialect.name]

    @reg.task(name='look')
    def look():
        with cursor_of(mqueue.current().connection) as cursor:
            cursor.execute(settings[0])
            seen['settings'] = tuple(cursor.fetchone())
            seen['in transaction'] = getattr(mqueue.current().connection, 'in_transaction', True)
    conn = connect(autocommit=True)     # an autocommit connection must not disable the guarantees
    reg.enqueue(conn, 'look', [])
    assert mqueue.Worker(conn, registry=reg).run(burst=True) == 1
    assert seen['settings'] == settings[1] and seen['in transaction']   # the server's level by default
    conn.close()


def test_an_error_whose_text_cannot_be_encoded_is_still_recorded(db, reg):
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError('no str for you')

    @reg.task(name='bad_text', retries=0)
    def bad_text(kind):
        if kind == 'surrogate':
            raise OSError('cannot import ' + os.fsdecode(b'caf\xe9.csv'))
        raise Unprintable()
    with committed() as conn:
        reg.enqueue(conn, 'bad_text', ['surrogate'])
        reg.enqueue(conn, 'bad_text', ['unprintable'])
    assert worker(reg).run(burst=True) == 2
    errors = [r['last_error'] for r in tasks_in(db, reg)]
    assert errors[0].startswith('OSError: cannot import caf\\udce9.csv')
    assert errors[1].startswith('Unprintable: <unprintable>')


@pytest.mark.parametrize('raised', [SystemExit(3), KeyboardInterrupt(), MemoryError(), RecursionError()])
def test_a_task_raising_anything_fails_alone_and_leaves_no_context_behind(db, reg, raised):
    ran = []

    @reg.task(name='poison', retries=0)
    def poison():
        raise raised
    reg.task(name='after')(lambda: ran.append(1))
    with committed() as conn:
        reg.enqueue(conn, 'poison', [])
        reg.enqueue(conn, 'after', [])
    assert worker(reg).run(burst=True) == 2 and ran == [1]      # the worker carried on
    row, = tasks_in(db, reg)
    assert row['dead_at'] and row['last_error'].startswith(type(raised).__name__)
    with pytest.raises(mqueue.NotInTaskError):
        mqueue.current()


def test_a_task_that_closes_its_connection_fails_and_the_worker_reconnects(db, reg):
    @reg.task(name='closer', retries=1, backoff=0)
    def closer():
        if mqueue.current().retries == 0:
            mqueue.current().connection.close()
    enqueued(reg, 'closer', [])
    failures = []
    w = worker(reg, hooks={'task_failed': lambda context, error, **info: failures.append(error)})
    assert w.run(burst=True) == 2 and tasks_in(db, reg) == []
    assert len(failures) == 1 and failures[0].startswith('TransactionLost')


@only('mysql', 'postgresql')   # (on SQLite every write waits for a running task: test_sqlite_...)
def test_retry_dead_never_waits_on_a_running_task(db, reg):
    query(db, f"INSERT INTO {reg.table} (args, eta, name, queue, dead_at) VALUES "
              f"('[]', {B.now}, 'hold', 'default', {B.now})")
    with a_running_task(reg) as conn:
        with cursor_of(conn) as cursor:
            if B.dialect.name == 'mysql':
                cursor.execute('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ')
            B.lock_timeout(cursor, 3)
        began = time.monotonic()
        assert reg.retry_dead(conn) == 1 and reg.retry_dead(conn, name='hold') == 0
        conn.commit()
        assert time.monotonic() - began < 1


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_running_task_finish_then_exits_0(db, reg, ledger, tmp_path, signum):
    with committed() as conn:
        task_id = reg.enqueue(conn, 'slow', [])
        reg.enqueue(conn, 'slow', [], delay=0.5)    # must not be started once the worker is stopping
    child = spawn(spec_for(reg, ledger, tmp_path))
    wait_for(lambda: list(tmp_path.glob('started-*-0')))
    child.send_signal(signum)
    time.sleep(0.2)                              # the signal is handled; the task is still running
    assert child.poll() is None
    (tmp_path / 'go').touch()
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 0, out
    assert query(db, f'SELECT task_id FROM {ledger}') == ((task_id,),)
    assert len(tasks_in(db, reg)) == 1


def test_a_signal_while_the_worker_connects_at_start_up_is_a_clean_stop(db, reg, ledger, tmp_path):
    """systemd and Kubernetes stop a worker whenever a deploy says so, even one still connecting
    (issue 12: the handlers were installed after the first connection, and SIGTERM killed it)."""
    enqueued(reg, 'record', [1])
    child = spawn(spec_for(reg, ledger, tmp_path, gated_connect=True))
    wait_for(lambda: (tmp_path / 'connecting').exists())
    child.send_signal(signal.SIGTERM)
    (tmp_path / 'connect').touch()
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 0, out
    assert 'SIGTERM: finishing the running tasks' in out
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0     # it started nothing...
    row, = tasks_in(db, reg)
    assert row['retries'] == 0 and row['dead_at'] is None            # ...and claimed nothing


def test_a_success_is_logged_only_once_it_has_committed(db, reg, ledger, tmp_path):
    """An operator reads the log as the record: a worker killed between a task's return and its
    batch's commit must not have logged a success that was rolled back (issue 12)."""
    with committed() as conn:
        returned = reg.enqueue(conn, 'record', [1])
        reg.enqueue(conn, 'crash', [])    # its batch-mate: ends the process before the batch commits
    child = spawn(spec_for(reg, ledger, tmp_path, batch=2, log_level='INFO'))
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 3, out                                  # crash's os._exit(3)
    assert (tmp_path / 'runlog').read_text().split() == [str(returned)]   # the task ran and returned...
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0        # ...its writes never committed...
    assert [row['id'] for row in tasks_in(db, reg)] == [returned, returned + 1]   # ...nor its completion...
    assert f'connected to {B.dialect.name}' in out and 'succeeded' not in out, out   # ...and the log says no more
    query(db, f'UPDATE {reg.table} SET eta = {B.now}')                   # as when the leases end
    child = spawn(spec_for(reg, ledger, tmp_path, log_level='INFO'))      # one task per batch
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 3 and re.search(rf'task {returned} record \(queue default\) attempt 2 succeeded in', out), out


def test_a_second_signal_abandons_the_task_and_hands_it_back(db, reg, ledger, tmp_path):
    enqueued(reg, 'slow', [])
    child = spawn(spec_for(reg, ledger, tmp_path))
    wait_for(lambda: list(tmp_path.glob('started-*-0')))
    child.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 128 + signal.SIGTERM, out
    row, = tasks_in(db, reg)
    assert row['retries'] == 0 and row['dead_at'] is None     # handed back uncounted
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0
    assert query(db, f'SELECT eta <= {B.now} FROM {reg.table}')[0][0] == 1   # due at once


@only('mysql', 'postgresql')   # (SQLite runs one task at a time, whatever the threads)
def test_a_second_signal_hands_back_every_threads_task(db, reg, ledger, tmp_path):
    with committed() as conn:
        reg.enqueue(conn, 'slow', [])
        reg.enqueue(conn, 'slow', [])
    child = spawn(spec_for(reg, ledger, tmp_path, concurrency=2))
    wait_for(lambda: len(list(tmp_path.glob('started-*-0'))) == 2)
    child.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=20)
    assert child.returncode == 128 + signal.SIGTERM, out
    rows = tasks_in(db, reg)
    assert [(r['retries'], r['dead_at']) for r in rows] == [(0, None), (0, None)]   # uncounted
    assert query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 0
    assert query(db, f'SELECT MAX(eta) <= {B.now} FROM {reg.table}')[0][0] == 1   # due at once


@only('postgresql')
def test_an_idle_postgresql_worker_is_woken_by_the_enqueues_commit(db, reg):
    """LISTEN/NOTIFY: with a 5 s poll interval, a task committed while the worker idles starts
    within milliseconds (polling stays the fallback: MySQL and SQLite wait for the next poll)."""
    started, delays = [], []
    reg.task(name='wake')(lambda: started.append(time.monotonic()))
    w = worker(reg, poll_interval=5.0)
    thread = run_in_thread(w)
    try:
        time.sleep(0.3)                          # let it claim nothing and settle into its idle wait
        for _ in range(3):
            conn = connect()
            reg.enqueue(conn, 'wake', [])
            count = len(started)                 # before the commit: the task may start before commit() returns
            committed = time.monotonic()
            conn.commit()
            conn.close()
            wait_for(lambda: len(started) > count, timeout=4)
            delays.append(started[-1] - committed)
            time.sleep(0.2)
    finally:
        w.stop()
        thread.join(10)
    assert max(delays) < 0.5, delays             # not the 5 s poll


def test_stop_from_another_thread_and_concurrency_threads(db, reg, ledger):
    threads_seen = set()

    @reg.task(name='n')
    def n(i):
        threads_seen.add(threading.current_thread().name)
        write_ledger(ledger)
        time.sleep(0.002)
    conn = connect()
    for i in range(200):
        reg.enqueue(conn, 'n', [i])
    conn.commit()
    conn.close()
    w = worker(reg, concurrency=4)
    thread = run_in_thread(w)
    wait_for(lambda: not tasks_in(db, reg))
    w.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert query(db, f'SELECT COUNT(*), COUNT(DISTINCT task_id) FROM {ledger}')[0] == (200, 200)
    assert all(t.startswith('mqueue-worker-') for t in threads_seen)
    assert len(threads_seen) > 1 or B.dialect.name == 'sqlite'   # (one writer: a thread may take them all)


def test_stopping_after_a_batch_leaves_the_other_tasks_unclaimed(db, reg, ledger):
    @reg.task(name='step')
    def step(i):
        write_ledger(ledger, str(i))
    with committed() as conn:
        reg.enqueue_many(conn, 'step', [[i] for i in range(6)])
    w = worker(reg, batch=2)
    original = w._process

    def process_then_stop(*args):
        original(*args)
        w.stop()
    w._process = process_then_stop
    assert w.run() == 2
    rows = tasks_in(db, reg)
    assert len(rows) == 4 and query(db, f'SELECT COUNT(*) FROM {ledger}')[0][0] == 2
    assert all(r['retries'] == 0 and r['claimed_at'] is None for r in rows)   # never claimed
    assert query(db, f'SELECT MAX(eta) <= {B.now} FROM {reg.table}')[0][0] == 1


@only('mariadb-pymysql')   # counts pymysql's commands
def test_an_idle_worker_sends_one_statement_per_poll(reg, monkeypatch):
    import pymysql
    reg.task(name='nothing')(lambda: None)
    sent = []
    execute = pymysql.connections.Connection._execute_command

    def counting(conn, command, sql):
        sent.append(sql)
        return execute(conn, command, sql)
    monkeypatch.setattr(pymysql.connections.Connection, '_execute_command', counting)
    w = worker(reg, poll_interval=0.02)
    thread = run_in_thread(w)
    try:
        wait_for(lambda: any(b'SELECT 1 AS due' in s for s in sent if isinstance(s, bytes)))  # idle: probing
        before = len(sent)
        time.sleep(0.5)                                     # about 25 polls
        idle = sent[before:]
    finally:
        w.stop()
        thread.join(10)
    probes = [s for s in idle if b'SELECT 1 AS due' in s]   # its blocks and the rescue's, in one UNION ALL
    lookups = [s for s in idle if s.startswith(b'SELECT MIN(priority)')]   # priorities in use, every 5 s
    assert 15 <= len(probes) <= 30, len(probes)
    assert len(probes) + len(lookups) == len(idle) and len(lookups) <= 2   # no COMMIT, no claim


@only('sqlite')   # (the worker's own timing, the same on every database)
@pytest.mark.parametrize('probe_seconds, interval, gaps', [
    (0.1, 0.3, (0.25, 0.35)),    # start to start: 0.3, not 0.4 (the interval after a poll of 0.1 s)
    (0.3, 0.2, (0.38, 0.45)),    # a poll slower than the interval: half an interval's rest after it (0.4, not 0.5)
])
def test_the_poll_interval_runs_from_the_start_of_one_poll_to_the_next(reg, monkeypatch, probe_seconds, interval,
                                                                     gaps):
    reg.task(name='nothing')(lambda: None)
    starts = []
    probe = mqueue.Worker._probe

    def slow_probe(self):
        starts.append(time.monotonic())
        time.sleep(probe_seconds)
        return probe(self)
    monkeypatch.setattr(mqueue.Worker, '_probe', slow_probe)
    monkeypatch.setattr(mqueue, '_jittered', lambda seconds: seconds)   # (the margins above are 50 ms)
    w = worker(reg, poll_interval=interval)
    thread = run_in_thread(w)
    try:
        wait_for(lambda: len(starts) >= 7, timeout=30)
    finally:
        w.stop()
        thread.join(10)
    between = sorted(b - a for a, b in zip(starts[1:], starts[2:]))   # (the first poll follows the claim)
    assert gaps[0] <= between[len(between) // 2] <= gaps[1], between
    assert between[0] >= probe_seconds + interval / 2 - 0.01, between


def test_a_plain_connection_serves_a_one_thread_worker(db, reg):
    ran = []
    reg.task(name='p')(lambda: ran.append(1))
    conn = connect()
    reg.enqueue(conn, 'p', [])
    conn.commit()
    assert mqueue.Worker(conn, registry=reg).run(burst=True) == 1 and ran == [1]
    conn.close()


# Hooks ###########################################################################################


def test_hooks_wrap_tasks_and_report_events_and_a_failing_hook_is_only_logged(db, reg, caplog):
    events = []

    @contextlib.contextmanager
    def around_task(context):
        events.append(('enter', context.name))
        yield
        events.append(('exit', context.name))

    def broken(context, **info):
        raise RuntimeError('hook bug')
    hooks = {'around_task': around_task, 'task_started': broken,
             'task_succeeded': lambda c, duration: events.append(('ok', c.id, duration >= 0)),
             'task_failed': lambda c, **i: events.append(('failed', c.id, type(i['exception']).__name__)),
             'task_dead': lambda c, **i: events.append(('dead', c.id))}
    reg.task(name='good')(lambda: None)

    @reg.task(name='bad', retries=1, backoff=0)
    def bad():
        raise KeyError('k')
    with committed() as conn:
        good_id, bad_id = reg.enqueue(conn, 'good', []), reg.enqueue(conn, 'bad', [])
    assert worker(reg, hooks=hooks).run(burst=True) == 3
    assert events == [('enter', 'good'), ('exit', 'good'), ('ok', good_id, True), ('enter', 'bad'),
                      ('failed', bad_id, 'KeyError'), ('enter', 'bad'), ('dead', bad_id)]
    assert sum('the task_started hook failed' in r.getMessage() for r in caplog.records) == 3


def sqlalchemy_url(url):
    """SQLAlchemy's name for a URL of the suite (the same, but for mysql-connector's driver name)."""
    return url.replace('mysql+connector:', 'mysql+mysqlconnector:')


def test_sqlalchemy_session_adapter(server, tmp_path, monkeypatch):
    """docs/hooks.md's adapter, imported from examples/sqlalchemy_session.py: a transaction hook
    around a Session, and begin_nested() per task so that a failing task's pending ORM objects are
    discarded with its SQL. In a database of its own: the example uses mqueue's default table names."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session
    reg = mqueue.Registry()
    monkeypatch.setattr(mqueue, 'default_registry', reg)   # where the example's @mqueue.task registers
    with database_of_its_own(tmp_path) as url:
        own = Backend(B.name, url).connect(autocommit=True)
        reg.create_tables(own)
        monkeypatch.setenv('SQLALCHEMY_URL', sqlalchemy_url(url))
        example = example_module('examples/sqlalchemy_session.py')
        if B.dialect.name == 'sqlite':   # (SQLAlchemy's SQLite dialect has no READ COMMITTED)
            example.engine = create_engine(sqlalchemy_url(url))
        try:
            example.Base.metadata.create_all(example.engine)
            with Session(example.engine) as session, session.begin():   # the app enqueues in its own Session
                session.add(example.Greeting(email='owner@x'))
                reg.enqueue(session.connection().connection.dbapi_connection, 'greet', ['good@x'])
                reg.enqueue(session.connection().connection.dbapi_connection, 'greet', ['bad@x.invalid'])
            w = mqueue.Worker(None, registry=reg, poll_interval=0.01,
                              hooks={'transaction': example.transaction, 'around_task': example.around_task})
            assert w.run(burst=True) == 2
            with Session(example.engine) as session:
                assert sorted(session.scalars(select(example.Greeting.email))) == ['good@x', 'owner@x']
            (dead_at, error), = query(own, 'SELECT dead_at, last_error FROM task')
            assert dead_at and 'ValueError: cannot greet bad@x.invalid' in error
        finally:
            example.engine.dispose()
            own.close()


@only('mariadb-pymysql', 'postgresql-psycopg')   # (its engine asks for READ COMMITTED: not SQLite's)
def test_sqlalchemy_session_example_runs_as_a_program(server, tmp_path):
    """`python examples/sqlalchemy_session.py` on a database with mqueue's tables: the greeting that
    failed is discarded with its task's attempt, and it prints what docs/hooks.md says."""
    with database_of_its_own(tmp_path) as url:
        own = Backend(B.name, url).connect(autocommit=True)
        mqueue.Registry().create_tables(own)
        own.close()
        done = subprocess.run([sys.executable, str(example_file('examples/sqlalchemy_session.py'))], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, SQLALCHEMY_URL=sqlalchemy_url(url), PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "['ann@example.com']\n", done.stdout + done.stderr


@only('mariadb-pymysql', 'postgresql-psycopg')   # (its Dao asks for READ COMMITTED: not SQLite's)
def test_sqlalchemy_dao_example_enqueues_with_its_user_and_the_daemon_runs_the_task(server, tmp_path):
    """docs/hooks.md's sqlalchemy-dao application, examples/sqlalchemy_dao/: app.py enqueues inside a
    SessionContext, in the transaction of its new user; daemon.py (the adapter session_context_hooks)
    runs the task, whose ctx.session write commits with it, and stops at SIGTERM with status 0."""
    here = example_file('examples/sqlalchemy_dao/app.py').parent
    example_file('examples/sqlalchemy_dao/website.py')            # both programs import these two
    example_file('examples/sqlalchemy_dao/tasks/__init__.py')
    with database_of_its_own(tmp_path) as url:
        own = Backend(B.name, url).connect(autocommit=True)
        try:
            mqueue.Registry().create_tables(own)
            env = dict(os.environ, SQLALCHEMY_URL=sqlalchemy_url(url), PYTHONPATH=str(ROOT))
            done = subprocess.run([sys.executable, 'app.py'], cwd=here, capture_output=True, text=True, timeout=120,
                                  env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            assert query(own, 'SELECT name, queue FROM task') == (('tasks.mail', 'test-queue'),)
            (name, email, sent), = query(own, 'SELECT name, email, email_sent FROM example_user')
            assert (name, email, bool(sent)) == ('ann', 'ann@example.com', False)
            daemon = subprocess.Popen([sys.executable, str(example_file('examples/sqlalchemy_dao/daemon.py'))],
                                      cwd=here, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            try:
                wait_for(lambda: not query(own, 'SELECT id FROM task'), timeout=30)
            finally:
                daemon.send_signal(signal.SIGTERM)
                out, err = daemon.communicate(timeout=30)
            assert daemon.returncode == 0, out + err
            assert re.search(r'^INFO:mqueue:task \d+ tasks\.mail \(queue test-queue\) attempt 1 succeeded', err, re.M), err
            assert 'WARNING:mqueue:SIGTERM: finishing the running tasks' in err, err
            (sent,), = query(own, 'SELECT email_sent FROM example_user')
            assert bool(sent) is True
        finally:
            own.close()


# Operating: inspect, retry, cancel, purge; logs; metrics #########################################


def make_dead(db, reg, name='gone', queue='default', days_ago=0.0, error='ValueError: boom\nTraceback ...'):
    """A dead task, as a worker leaves one, that died some days ago; its id."""
    task_id = enqueued(reg, name, ['x'], queue=queue)
    query(db, f'UPDATE {reg.table} SET dead_at = {B.at(-days_ago * 86400)}, retries = 4, last_error = %s '
              f'WHERE id = %s', (error, task_id))
    return task_id


def test_queue_stats_count_ready_scheduled_running_dead_and_the_oldest_wait(db, reg):
    conn = connect()
    late = reg.enqueue(conn, 'x', [], queue='a')
    reg.enqueue(conn, 'x', [], queue='a')
    reg.enqueue(conn, 'x', [], queue='a', delay=3600)          # scheduled
    waiting = reg.enqueue(conn, 'x', [], queue='mail')         # waiting to retry (below)
    conn.commit()
    query(db, f'UPDATE {reg.table} SET eta = {B.at(-30)} WHERE id = %s', (late,))
    query(db, f"UPDATE {reg.table} SET eta = {B.at(60)}, retries = 1, last_error = 'E' WHERE id = %s", (waiting,))
    make_dead(db, reg, queue='mail')
    assert reg.queue_stats(conn, 'nothing-here') == []
    with a_running_task(reg) as reader:                        # 'hold', in queue default
        stats = {row.queue: row for row in reg.queue_stats(reader)}
        ranged = {row.queue: row for row in reg.queue_stats(reader, cap=1000)}   # from index ranges, under the cap
        capped = {row.queue: row[1:5] for row in reg.queue_stats(reader, cap=1)}
        reader.rollback()
    conn.close()
    assert {queue: row[1:5] for queue, row in stats.items()} == {
        'a': (2, 1, 0, 0), 'default': (0, 0, 1, 0), 'mail': (0, 1, 0, 1)}
    assert 29 < stats['a'].latency < 40 and stats['mail'].latency == stats['default'].latency == 0.0
    assert {queue: row[1:5] for queue, row in ranged.items()} == {queue: row[1:5] for queue, row in stats.items()}
    assert abs(ranged['a'].latency - stats['a'].latency) < 5 and ranged['mail'].latency == 0.0
    assert capped == ({'a': (1, 1, 0, 0), 'default': (0, 0, 1, 0), 'mail': (0, 1, 0, 1)} if B.dialect.counts_by_range
                      else {queue: row[1:5] for queue, row in stats.items()})   # (PostgreSQL: exact, one scan)
    with pytest.raises(ValueError, match='cap'):
        reg.queue_stats(db, cap=0)
    assert [row.queue for row in reg.queue_stats(db, 'mail')] == ['mail']
    assert mqueue.QueueStats._fields == ('queue', 'ready', 'scheduled', 'running', 'dead', 'latency')
    assert 'default' not in {row.queue for row in reg.queue_stats(db)}   # 'hold' completed: its row is gone


def test_workers_count_the_tasks_that_end_per_minute_and_the_dashboard_draws_them(db, reg, monkeypatch):
    """The throughput picture's counts: each success is done, each failed attempt (retried or dead)
    failed; written while the worker runs (every COUNTS_EVERY seconds, here 0.1, in a transaction
    of their own) and as it stops; minutes older than COUNTS_KEPT deleted; every minute of the window
    listed, oldest first; the queues page draws them."""
    import mqueue_web
    monkeypatch.setattr(mqueue, 'COUNTS_EVERY', 0.1)
    reg.task(name='ok', queue='mail')(lambda: None)

    @reg.task(name='bad', retries=1, backoff=0)
    def bad():
        raise ValueError('no')
    old = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, second=0, microsecond=0) - dt.timedelta(hours=3)
    query(db, f'INSERT INTO {reg.counts_table} (queue, minute, done, failed) VALUES (%s, %s, 7, 0)',
          ('mail', B.dialect.stamp(old)))
    db.commit()
    w = worker(reg, queues=['mail', 'default'], crons=False)
    thread = run_in_thread(w)
    try:
        with committed() as conn:
            reg.enqueue_many(conn, 'ok', [[]] * 3)
            reg.enqueue(conn, 'bad', [])

        def ended():
            minutes = reg.throughput(db)
            db.rollback()
            return (sum(m.done for m in minutes), sum(m.failed for m in minutes)) == (3, 2) and minutes
        minutes = wait_for(ended, timeout=15)   # written while it runs
    finally:
        w.stop()
        thread.join(10)
    assert len(minutes) == 60 and all(b.minute - a.minute == dt.timedelta(minutes=1) for a, b in zip(minutes, minutes[1:]))
    assert minutes[-1].minute <= dt.datetime.now(dt.timezone.utc) < minutes[-1].minute + dt.timedelta(minutes=1, seconds=5)
    mail = reg.throughput(db, queue='mail', minutes=5)
    assert len(mail) == 5 and (sum(m.done for m in mail), sum(m.failed for m in mail)) == (3, 0)
    assert query(db, f'SELECT COUNT(*) FROM {reg.counts_table} WHERE done = 7') == ((0,),)   # 3 hours old: gone
    page = Browserless(mqueue_web.Dashboard(connect, reg)).get('/')[2]
    assert '<svg class="chart"' in page and '3 done, 2 failed in the last hour' in page
    assert page.count('<rect class="ok"') >= 1 and page.count('<rect class="bad"') >= 1
    with pytest.raises(ValueError, match='minutes'):
        reg.throughput(db, minutes=0)


def test_a_worker_on_tables_without_the_counts_table_runs_says_so_once_and_looks_again(db, reg, caplog,
                                                                                       monkeypatch):
    """Tables made before the counts' table existed: tasks run as before, one warning says what
    adds it, throughput is empty and the dashboard says why; once `init-db` has made it, the
    worker finds it when it looks again (COUNTS_LOOK_AGAIN, here at once) and counts."""
    import mqueue_web
    drop_tables(reg.counts_table)
    reg.task(name='ok')(lambda: None)
    with committed() as conn:
        reg.enqueue_many(conn, 'ok', [[]] * 3)
    w = worker(reg, crons=False)
    with caplog.at_level(logging.WARNING, logger='mqueue'):
        assert w.run(burst=True) == 3
        with committed() as conn:
            reg.enqueue_many(conn, 'ok', [[]] * 2)
        assert w.run(burst=True) == 2   # (looked at again later: nothing counted meanwhile)
    assert caplog.text.count(f'no throughput counts: table {reg.counts_table} is missing') == 1
    assert reg.throughput(db) == [] and tasks_in(db, reg) == []
    db.rollback()
    assert 'No throughput counts' in Browserless(mqueue_web.Dashboard(connect, reg)).get('/')[2]
    with committed() as conn:
        reg.create_tables(conn)
        reg.enqueue_many(conn, 'ok', [[]] * 4)
    monkeypatch.setattr(mqueue, 'COUNTS_LOOK_AGAIN', 0.0)
    w._counts_look_at = 0.0   # (its look-again time, as COUNTS_LOOK_AGAIN had set it)
    assert w.run(burst=True) == 4
    assert sum(m.done for m in reg.throughput(db)) == 4


def test_dead_tasks_are_listed_newest_first_with_their_last_error(db, reg):
    old = make_dead(db, reg, 'a', days_ago=2, error='KeyError: first\nTraceback (most recent call last): ...')
    new = make_dead(db, reg, 'b', queue='mail', days_ago=1)
    newest = make_dead(db, reg, 'a', queue='mail')
    conn = connect()
    reg.enqueue(conn, 'a', [])                                 # pending: not listed
    conn.commit()
    listed = reg.dead_tasks(conn)
    assert [row.id for row in listed] == [newest, new, old]
    row = listed[2]
    assert (row.name, row.queue, row.args, row.attempts) == ('a', 'default', '["x"]', 4)
    assert row.error.startswith('KeyError: first\nTraceback') and row.dead_at.tzinfo is dt.timezone.utc
    assert 1.9 < (listed[0].dead_at - row.dead_at).total_seconds() / 86400 < 2.1
    assert [r.id for r in reg.dead_tasks(conn, queue='mail')] == [newest, new]
    assert [r.id for r in reg.dead_tasks(conn, name='a', queue='mail')] == [newest]
    assert [r.id for r in reg.dead_tasks(conn, limit=1)] == [newest]
    with pytest.raises(ValueError, match='limit'):
        reg.dead_tasks(conn, limit=0)
    conn.rollback()
    conn.close()


def test_cancel_deletes_a_pending_or_dead_task_in_the_callers_transaction(db, reg):
    ran = []
    reg.task(name='t')(lambda n: ran.append(n))
    conn = connect()
    first, second, third = (reg.enqueue(conn, 't', [n]) for n in (1, 2, 3))
    conn.commit()
    dead = make_dead(db, reg, 't')
    assert reg.cancel(conn, first)
    conn.rollback()                                            # the caller's transaction: undone
    assert reg.cancel(conn, first) and reg.cancel(conn, dead) and not reg.cancel(conn, 10 ** 9)
    assert not reg.cancel(conn, first)                         # already gone
    conn.commit()
    conn.close()
    assert worker(reg).run(burst=True) == 2 and sorted(ran) == [2, 3]
    assert tasks_in(db, reg) == []


def test_purge_dead_deletes_dead_tasks_older_than_an_age(db, reg):
    make_dead(db, reg, days_ago=40), make_dead(db, reg, queue='mail', days_ago=10)   # the two purged below
    recent = make_dead(db, reg)
    conn = connect()
    pending = reg.enqueue(conn, 'x', [])
    conn.commit()
    assert reg.purge_dead(conn, dt.timedelta(days=30)) == 1
    conn.rollback()                                            # the caller's transaction: undone
    assert len(tasks_in(db, reg)) == 4
    assert reg.purge_dead(conn, dt.timedelta(days=30)) == 1
    assert reg.purge_dead(conn, 5 * 86400, queue='default') == 0 and reg.purge_dead(conn, 5 * 86400, name='y') == 0
    assert reg.purge_dead(conn, 5 * 86400, queue='mail', name='gone') == 1
    conn.commit()
    assert [row['id'] for row in tasks_in(db, reg)] == [recent, pending]
    assert reg.purge_dead(conn, 0) == 1                        # 0: every dead task
    conn.commit()
    assert [row['id'] for row in tasks_in(db, reg)] == [pending]
    for bad in (-1, 'a week', None, True):
        with pytest.raises(ValueError, match='older_than'):
            reg.purge_dead(conn, bad)
    conn.close()


@only('mysql', 'postgresql')   # (on SQLite every write waits for a running task: test_sqlite_...)
def test_operating_never_waits_on_a_running_task(db, reg):
    dead = make_dead(db, reg, 'hold')
    with a_running_task(reg) as conn:
        running = query(db, f"SELECT id FROM {reg.table} WHERE name = 'hold' AND dead_at IS NULL")[0][0]
        with cursor_of(conn) as cursor:
            if B.dialect.name == 'mysql':
                cursor.execute('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ')
            B.lock_timeout(cursor, 3)
        began = time.monotonic()
        assert [row.running for row in reg.queue_stats(conn)] == [1]
        assert [row.id for row in reg.dead_tasks(conn)] == [dead]
        assert not reg.cancel(conn, running)                   # a worker holds it: left alone, at once
        assert reg.retry_dead(conn, [running]) == 0            # not dead, and held: passed over
        assert reg.retry_dead(conn) == 1 and reg.retry_dead(conn, name='hold') == 0
        assert reg.purge_dead(conn, 0) == 0
        assert reg.cancel(conn, dead)
        conn.commit()
        assert time.monotonic() - began < 1
    assert tasks_in(db, reg) == []                             # the running task completed


def test_what_a_claim_buried_is_reported_even_if_its_batch_fails_to_start(db, reg):
    """The claim's outcomes wait for the batch to hold its rows; if its transaction cannot even
    begin, they are reported all the same (the burial was committed with the claim)."""
    reg.task(name='good')(lambda: None)
    with committed() as conn:
        reg.enqueue(conn, 'good', [])
        with cursor_of(conn) as cursor:
            cursor.execute(f"INSERT INTO {reg.table} (args, eta, name, queue) "
                           f"VALUES ('[]', {B.now}, 'nobody', 'default')")   # a name no worker knows
    transactions, dead = [], []

    @contextlib.contextmanager
    def transaction():   # the claim's transaction, then a batch whose transaction cannot begin
        transactions.append(1)
        if len(transactions) > 1:
            raise ConnectionError('the pool is exhausted')
        with committed() as conn:
            yield conn
    w = worker(reg, batch=2, hooks={'transaction': transaction,
                                    'task_dead': lambda context, **info: dead.append(context.name)})
    with pytest.raises(ConnectionError):
        w.run_once()
    assert dead == ['nobody']


def test_a_batch_runs_only_the_claims_still_its_own_and_commits_them_once(db, reg, caplog):
    """A worker stalled between its claim and its batch (past rescue_after) finds one claim taken
    by another worker, one rescued and not yet taken, one buried: it runs only the fourth, whose
    writes commit once (its savepoints are numbered by the tasks that run, so the batch's check of
    its transaction does not fail for want of the first's)."""
    ran = []
    reg.task(name='t')(lambda n: ran.append((n, mqueue.current().connection)))   # (reading it takes its savepoint)
    with committed() as conn:
        ids = [reg.enqueue(conn, 't', [n]) for n in range(4)]
    stalled = worker(reg, batch=4)
    claimed, _ = stalled._claim()
    assert [c.id for c in claimed] == ids
    with committed() as conn, cursor_of(conn) as cursor:
        cursor.execute(f'UPDATE {reg.table} SET retries = retries + 1 WHERE id = %s', (ids[0],))   # claimed again
        cursor.execute(f'UPDATE {reg.table} SET claimed_at = NULL, eta = {B.now} WHERE id = %s', (ids[1],))  # rescued
        cursor.execute(f'UPDATE {reg.table} SET claimed_at = NULL, dead_at = {B.now} WHERE id = %s', (ids[2],))  # buried
    with caplog.at_level(logging.WARNING, logger='mqueue'):
        stalled._process(claimed)
    stalled._discard_connection()
    assert [n for n, _ in ran] == [3]
    assert [row['id'] for row in tasks_in(db, reg)] == ids[:3]
    assert 'TransactionLost' not in caplog.text and caplog.text.count('its claim was lost before it ran') == 3


@only('mysql')
def test_a_serializable_mysql_worker_leaves_a_dead_workers_tasks_to_the_lease(db, reg, caplog):
    """InnoDB's plain reads lock at SERIALIZABLE: the rescue's look would wait on every running
    batch. Such a worker says so once, and runs."""
    reg.task(name='t')(lambda: None)
    enqueued(reg, 't', [])
    w = worker(reg, isolation='SERIALIZABLE')
    with caplog.at_level(logging.WARNING, logger='mqueue'):
        assert w.run(burst=True) == 1
    assert not w._can_rescue() and tasks_in(db, reg) == []
    assert caplog.text.count("no rescue of a dead worker's tasks: mysql reads with locks at SERIALIZABLE") == 1


def test_a_dead_workers_claim_is_running_until_a_worker_takes_it_back(db, reg):
    """A worker that dies mid-task leaves claimed_at set: RUNNING, and not cancellable, until
    another worker takes the task back: on MySQL/PostgreSQL rescue_after after its claim, on
    SQLite (no row locks: a claim is a dead worker's if its process has ended, and here the
    process lives on) when its lease ends. It then runs, that attempt counted."""
    ran = []
    reg.task(name='t')(lambda: ran.append(mqueue.current().retries))
    conn = connect()
    task_id = reg.enqueue(conn, 't', [])
    conn.commit()
    lease = 3.0
    dying = worker(reg, lease=lease, rescue_after=0.5)
    claimed, _ = dying._claim()                                # claimed and committed, never run
    claimed_at = time.monotonic()
    dying._discard_connection()
    assert [c.id for c in claimed] == [task_id]
    assert [row[1:4] for row in reg.queue_stats(conn)] == [(0, 0, 1)] and not reg.cancel(conn, task_id)
    conn.rollback()
    conn.close()
    rescuer = worker(reg, lease=lease, rescue_after=0.5)
    wait_for(lambda: rescuer.run_once(), timeout=10, interval=0.05)
    back_in = time.monotonic() - claimed_at
    assert ran == [1] and tasks_in(db, reg) == []
    if B.dialect.row_locks:
        assert back_in < lease, back_in
    else:
        assert back_in >= lease - 0.1, back_in


def test_a_worker_without_its_tables_stops_with_advice(db, reg):
    reg.task(name='t')(lambda: None)
    missing = mqueue.Registry(table=f't_none_{uuid.uuid4().hex[:8]}')
    missing.task(name='t')(lambda: None)
    w = mqueue.Worker(connect, registry=missing, poll_interval=0.01, crons=False)
    stopped = threading.Event()
    failure = []

    def run():
        try:
            w.run()                                            # not burst: it would retry other errors
        except mqueue.MQueueError as exc:
            failure.append(str(exc))
        stopped.set()
    threading.Thread(target=run, daemon=True).start()
    if not stopped.wait(10):
        w.stop()
        pytest.fail('the worker kept retrying without its table')
    assert 'run `mqueue init-db`' in failure[0]
    # a table made by mqueue 0.1 (no claimed_at) is refused with the way to upgrade it
    old = mqueue.Registry(table=f't_old_{uuid.uuid4().hex[:8]}', cron_table=reg.cron_table)
    ddl = old.schema(B.dialect.name).split(';\n')
    with cursor_of(db) as cursor:
        for statement in ddl:   # (0.1 had no claimed_at, nor 0.2 its index)
            if statement.strip() and old.table in statement and '_claimed ON' not in statement:
                cursor.execute(re.sub(r'\n\s*claimed_at [^\n]*|,\n\s*KEY claimed [^\n]*', '', statement))
    try:
        old.task(name='t')(lambda: None)
        enqueued(old, 't', [])
        with pytest.raises(mqueue.MQueueError, match='lacks a column.*Upgrading'):
            mqueue.Worker(connect, registry=old, poll_interval=0.01).run()
        # docs/upgrading.md's statement for this database upgrades it, and the task runs
        upgrade = re.search(rf'-- {B.dialect.name}\n(ALTER TABLE task [^;]*;)', upgrade_from_0_1_sql()).group(1)
        query(db, upgrade.replace('ALTER TABLE task', f'ALTER TABLE {old.table}').rstrip(';'))
        assert mqueue.Worker(connect, registry=old, poll_interval=0.01).run(burst=True) == 1
        assert query(db, f'SELECT COUNT(*) FROM {old.table}') == ((0,),)
    finally:
        drop_tables(old.table, old.result_table, old.counts_table)


def upgrade_from_0_1_sql():
    return readme_block('upgrade-0.1-sql', 'sql')


def test_worker_logs_start_connection_each_attempt_with_its_outcome_and_stop(db, reg, caplog):
    caplog.set_level(logging.INFO, logger='mqueue')
    reg.task(name='fine')(lambda: None)

    @reg.task(name='flaky', retries=1, backoff=0)
    def flaky():
        if mqueue.current().retries == 0:
            raise ConnectionError('try later')

    @reg.task(name='doomed', retries=0)
    def doomed():
        raise ValueError('never')
    with committed() as conn:
        ids = {name: reg.enqueue(conn, name, []) for name in ('fine', 'flaky', 'doomed')}
    connect_ = mqueue.connect_url(B.url)
    assert mqueue.Worker(connect_, registry=reg, poll_interval=0.01, batch=1).run(burst=True) == 4
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == 'mqueue']
    messages = [message for _, message in records]
    assert records[0] == ('INFO', f'mqueue {mqueue.__version__} worker starting: database {connect_.description}, '
                                  f'queues default, concurrency 1, batch 1, tasks 3')
    where = {'mysql': f':{MYSQL_PORT}/test', 'postgresql': ':5432/test', 'sqlite': SQLITE_PATH}[B.dialect.name]
    assert any(level == 'INFO' and m.startswith(f'connected to {B.dialect.name} ') and where in m
               for level, m in records), records
    line = re.compile(r'task (\d+) (\w+) \(queue default\) attempt (\d) (succeeded|failed) in \d+\.\d ms(.*)', re.S)
    attempts = [(level, *line.fullmatch(m).groups()) for level, m in records if line.fullmatch(m)]
    assert [(level, int(i), name, int(n), outcome) for level, i, name, n, outcome, _ in attempts] == [
        ('INFO', ids['fine'], 'fine', 1, 'succeeded'), ('WARNING', ids['flaky'], 'flaky', 1, 'failed'),
        ('ERROR', ids['doomed'], 'doomed', 1, 'failed'), ('INFO', ids['flaky'], 'flaky', 2, 'succeeded')]
    retry, dead = attempts[1][-1], attempts[2][-1]
    assert retry.startswith('; retry in 0.0s:\nConnectionError: try later\nTraceback (most recent call last)')
    assert dead.startswith('; it is dead:\nValueError: never\nTraceback (most recent call last)')
    assert messages[-1] == 'mqueue worker stopped after 4 tasks'


@only('mariadb-pymysql')
def test_no_password_in_any_log_line_or_cli_error(db, reg, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger='mqueue')
    from urllib.parse import quote
    user, password = f'mq_{uuid.uuid4().hex[:8]}', 'Pw/' + uuid.uuid4().hex + '#%@:'   # to be percent-encoded
    query(db, f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    try:
        query(db, f"GRANT SELECT, INSERT, UPDATE, DELETE ON {DB['database']}.* TO '{user}'@'127.0.0.1'")
        url = f'mysql://{user}:{quote(password, safe="")}@{MYSQL_HOST}:{MYSQL_PORT}/{DB["database"]}'
        wrong = url.replace('%40%3A', 'x%40%3A')
        package = f'tasks_{uuid.uuid4().hex[:8]}'
        (tmp_path / package).mkdir()
        (tmp_path / package / '__init__.py').write_text(
            'import mqueue\n\n@mqueue.task(name="pw_ok")\ndef ok():\n    pass\n\n'
            '@mqueue.task(name="pw_bad", retries=0)\ndef bad():\n    raise ValueError("no")\n')
        with committed() as conn:
            reg.enqueue(conn, 'pw_ok', [])
            reg.enqueue(conn, 'pw_bad', [])
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        runs = [subprocess.run([sys.executable, '-m', 'mqueue', *argv], cwd=tmp_path, env=env, capture_output=True,
                               text=True, timeout=60) for argv in (
            ['worker', '--db', url, '--tasks', package, '--table', reg.table, '--burst', '--log-level', 'DEBUG'],
            ['status', '--db', url, '--table', reg.table],
            ['status', '--db', wrong, '--table', reg.table],   # wrong password
            ['status', '--db', url, '--table', 'no_such_table'],
            ['dead', '--db', url.replace(f':{MYSQL_PORT}/', ':1/'), '--table', reg.table],   # unreachable
            ['cancel', '424242', '--db', url, '--table', reg.table],
            ['status', '--db', url.replace(quote(password, safe=''), password)],   # not encoded: unparsable
        )]
        assert [run.returncode for run in runs] == [0, 0, 1, 1, 1, 1, 1], [run.stderr for run in runs]
        assert 'task' in runs[0].stderr and 'pw_bad' in runs[0].stderr and f'{user}@' in runs[0].stderr
        assert 'Access denied' in runs[2].stderr and 'init-db' in runs[3].stderr
        assert "Can't connect" in runs[4].stderr and 'not cancelled' in runs[5].stderr
        assert 'bad database URL' in runs[6].stderr
        for run in runs:
            for secret in (password, quote(password, safe=''), password[3:15]):
                assert secret not in run.stdout + run.stderr
        # in-process too: every record of a worker whose connection is killed and reopened
        w = mqueue.Worker(mqueue.connect_url(url), registry=reg, poll_interval=0.01)
        reg.task(name='pw_ok')(lambda: None)
        thread = run_in_thread(w)
        try:
            wait_for(lambda: any(r.getMessage().startswith('connected to') for r in caplog.records))
            for (connection_id,) in query(db, 'SELECT id FROM information_schema.processlist WHERE user = %s', (user,)):
                B.kill(db, connection_id)
            task_id = enqueued(reg, 'pw_ok', [])
            wait_for(lambda: task_id not in [row['id'] for row in tasks_in(db, reg)])
            wait_for(lambda: any(r.getMessage().startswith('reconnected to') for r in caplog.records))
        finally:
            w.stop()
            thread.join(10)
        logged = [logging.Formatter().format(record) for record in caplog.records]   # with tracebacks
        assert len(logged) > 5 and not [line for line in logged if password[3:15] in line]
        assert mqueue.main(['status', '--db', wrong, '--table', reg.table]) == 1
        assert password[3:15] not in capsys.readouterr().err
    finally:
        query(db, f"DROP USER '{user}'@'127.0.0.1'")


def readme_example(label):
    """Run a code block of README.md or docs/ (after <!-- example: label -->) as a module; its namespace."""
    namespace = {'__name__': f'readme_{label.replace("-", "_")}'}
    exec(compile(readme_block(label), f'docs ({label})', 'exec'), namespace)
    return namespace


_prometheus_example = []   # its counters register with prometheus_client's global registry: run it once


def test_readme_prometheus_example_counts_attempts_and_reads_queue_depth(db, reg):
    try:
        import prometheus_client
    except ImportError:   # an example's dependency, in the test extra
        message = "prometheus_client is not installed (pip install -e '.[test]')"
        pytest.fail(message) if os.environ.get('CI') else pytest.skip(message)
    if not _prometheus_example:
        _prometheus_example.append(readme_example('prometheus'))
    example = _prometheus_example[0]
    suffix = uuid.uuid4().hex[:8]   # task names of this test's own, as the counters live on
    fine, flaky, doomed = f'fine_{suffix}', f'flaky_{suffix}', f'doomed_{suffix}'
    reg.task(name=fine)(lambda: None)

    @reg.task(name=flaky, retries=1, backoff=0)
    def flaky_task():
        if mqueue.current().retries == 0:
            raise ConnectionError('again')

    @reg.task(name=doomed, retries=0)
    def doomed_task():
        raise ValueError('no')
    conn = connect()
    for name in (fine, fine, flaky, doomed):
        reg.enqueue(conn, name, [])
    reg.enqueue(conn, fine, [], queue='later', delay=3600)
    conn.commit()
    conn.close()
    assert worker(reg, hooks=example['HOOKS']).run(burst=True) == 5
    sample = prometheus_client.REGISTRY.get_sample_value
    assert sample('mqueue_task_attempts_started_total', {'queue': 'default', 'task': fine}) == 2
    assert sample('mqueue_task_attempts_started_total', {'queue': 'default', 'task': flaky}) == 2
    ended = {(task, outcome): sample('mqueue_task_attempts_ended_total', {'queue': 'default', 'task': task,
                                                                           'outcome': outcome})
             for task in (fine, flaky, doomed) for outcome in ('succeeded', 'failed', 'dead')}
    assert {key: value for key, value in ended.items() if value} == {
        (fine, 'succeeded'): 2, (flaky, 'failed'): 1, (flaky, 'succeeded'): 1, (doomed, 'dead'): 1}
    assert sample('mqueue_task_duration_seconds_count', {'queue': 'default', 'task': fine, 'outcome': 'succeeded'}) == 2
    assert 0 <= sample('mqueue_task_duration_seconds_sum', {'queue': 'default', 'task': fine, 'outcome': 'succeeded'}) < 1
    # the collector, on a registry of its own: what a scrape reads from the table
    scraped = prometheus_client.CollectorRegistry()
    scraped.register(example['QueueCollector'](connect, registry=reg))
    text = prometheus_client.generate_latest(scraped).decode()
    assert 'mqueue_tasks{queue="default",state="dead"} 1.0' in text
    assert 'mqueue_tasks{queue="later",state="scheduled"} 1.0' in text
    assert scraped.get_sample_value('mqueue_tasks', {'queue': 'default', 'state': 'ready'}) == 0
    assert scraped.get_sample_value('mqueue_queue_latency_seconds', {'queue': 'later'}) == 0


def test_readme_retention_cron_purges_dead_tasks_older_than_30_days(db, reg, monkeypatch):
    monkeypatch.setattr(mqueue, 'default_registry', reg)   # the recipe's @mqueue.cron registers here
    readme_example('purge-cron')
    name = 'readme_purge_cron.purge_dead_tasks'
    assert reg.crons[name].expression == '17 3 * * *'
    make_dead(db, reg, days_ago=31)                            # to be purged
    recent = make_dead(db, reg, days_ago=29)
    enqueued(reg, name, [])                              # as its cron would, at 03:17
    assert worker(reg, crons=False).run(burst=True) == 1
    assert [row['id'] for row in tasks_in(db, reg)] == [recent]


def cli(*argv, capsys):
    """mqueue.main(argv) in this process: (exit status, stdout, stderr)."""
    status = mqueue.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_status_dead_retry_cancel_purge_enqueue(db, reg, capsys):
    on = ('--db', B.url, '--table', reg.table)
    assert cli('status', *on, capsys=capsys) == (0, f'no tasks ({reg.table} in {mqueue.connect_url(B.url).description})\n', '')
    status, out, err = cli('enqueue', 'mail.send', '--args', '["ann@example.com", "Hi"]', *on, capsys=capsys)
    assert status == 0 and re.fullmatch(r'enqueued task (\d+) mail.send \(queue default\)\n', out), (out, err)
    status, out, _ = cli('enqueue', 'mail.send', '--args', '{"to": "bob@example.com"}', '--delay', '1h',
                         '--queue', 'mail', '--priority', '-5', '--json', *on, capsys=capsys)
    later = json.loads(out)
    assert status == 0 and later['queue'] == 'mail' and later['name'] == 'mail.send'
    row = tasks_in(db, reg)[-1]
    assert (row['id'], row['args'], row['queue'], row['priority']) == (later['id'], '{"to":"bob@example.com"}', 'mail', -5)
    assert 3590 < seconds_until_eta(db, reg, later['id']) <= 3600
    dead = [make_dead(db, reg, 'report.daily', queue='reports', days_ago=days,
                      error=f'KeyError: {days}\nTraceback (most recent call last):\n  File "x.py"') for days in (9, 2)]

    status, out, _ = cli('status', *on, capsys=capsys)
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ['QUEUE', 'READY', 'SCHEDULED', 'RUNNING', 'DEAD', 'OLDEST', 'READY']
    assert [line.split()[:5] for line in lines[1:]] == [
        ['default', '1', '0', '0', '0'], ['mail', '0', '1', '0', '0'], ['reports', '0', '0', '0', '2']]
    assert re.fullmatch(r'\d+\.\ds', lines[1].split()[5]) and lines[2].split()[5] == '-'
    for label in ('READY', 'SCHEDULED', 'RUNNING', 'DEAD'):   # numbers end under their heading's end
        end = lines[0].index(label) + len(label)
        assert all(line[end - 1] != ' ' and line[end:end + 1] == ' ' for line in lines[1:]), (label, lines)
    status, out, _ = cli('status', '--queue', 'reports', '--json', *on, capsys=capsys)
    assert json.loads(out) == [{'queue': 'reports', 'ready': 0, 'scheduled': 0, 'running': 0, 'dead': 2, 'latency': 0.0, 'past_timeout': []}]

    status, out, _ = cli('dead', *on, capsys=capsys)
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ['ID', 'QUEUE', 'NAME', 'ATTEMPTS', 'DEAD', 'SINCE', '(UTC)', 'LAST', 'ERROR']
    assert [line.split()[:4] + line.split()[6:] for line in lines[1:]] == [
        [str(dead[1]), 'reports', 'report.daily', '4', 'KeyError:', '2'],
        [str(dead[0]), 'reports', 'report.daily', '4', 'KeyError:', '9']]
    status, out, _ = cli('dead', '--full', '--limit', '1', *on, capsys=capsys)
    assert out.startswith(f'task {dead[1]} report.daily (queue reports), 4 attempts, dead since ')
    assert '\n  args: ["x"]\n  KeyError: 2\n  Traceback (most recent call last):\n    File "x.py"\n' in out
    status, out, _ = cli('dead', '--json', '--name', 'report.daily', *on, capsys=capsys)
    listed = json.loads(out)
    assert [task['id'] for task in listed] == dead[::-1] and listed[0]['error'].startswith('KeyError: 2\nTraceback')
    assert listed[0]['dead_at'].endswith('+00:00') and listed[0]['args'] == '["x"]'

    assert cli('retry', dead[0], *on, capsys=capsys)[1] == '1 dead task brought back\n'
    assert json.loads(cli('retry', '--queue', 'reports', '--json', *on, capsys=capsys)[1]) == {'retried': 1}
    assert cli('retry', '--all', *on, capsys=capsys)[1] == '0 dead tasks brought back\n'
    assert [row['dead_at'] for row in tasks_in(db, reg)] == [None] * 4

    status, out, err = cli('cancel', dead[0], dead[0], 10 ** 9, 10 ** 9 + 1, *on, capsys=capsys)
    assert (status, out) == (1, f'cancelled {dead[0]}\n')
    assert err == (f'mqueue: not cancelled: task {10 ** 9}: no such task (finished, or never enqueued); '
                   f'task {10 ** 9 + 1}: no such task (finished, or never enqueued)\n')   # one line
    status, out, _ = cli('cancel', dead[1], '--json', *on, capsys=capsys)
    assert status == 0 and json.loads(out) == {'cancelled': [dead[1]], 'not_cancelled': []}

    purged = [make_dead(db, reg, 'x', days_ago=days) for days in (40, 1)]
    assert cli('purge', '--older-than', '30d', *on, capsys=capsys)[1] == '1 dead task purged\n'
    assert json.loads(cli('purge', '--older-than', '0', '--json', *on, capsys=capsys)[1]) == {'purged': 1}
    assert [row['id'] for row in tasks_in(db, reg) if row['id'] in purged] == []
    assert len(tasks_in(db, reg)) == 2


def test_cli_enqueue_with_tasks_checks_the_name_and_arguments(db, reg, tmp_path, monkeypatch, capsys):
    package = f'tasks_{uuid.uuid4().hex[:8]}'
    make_tasks_package(tmp_path, package)
    (tmp_path / package / 'queued.py').write_text('import mqueue\n\n@mqueue.task(queue="slow", priority=3)\n'
                                                    'def report(day, *, full=False):\n    pass\n')
    monkeypatch.chdir(tmp_path)
    before = dict(mqueue.default_registry.tasks)
    table, cron_table = mqueue.default_registry.table, mqueue.default_registry.cron_table
    on = ('--db', B.url, '--table', reg.table, '--tasks', package)
    name = f'{package}.queued.report'
    try:
        status, out, _ = cli('enqueue', name, '--args', '{"day": "2026-11-30", "full": true}', *on, capsys=capsys)
        assert status == 0 and out.endswith(f'{name} (queue slow)\n')
        status, _, err = cli('enqueue', name, '--args', '[]', *on, capsys=capsys)
        assert status == 1 and err == (f"mqueue: {name}() cannot take these arguments: missing a required "
                                       "argument: 'day'\n")
        status, _, err = cli('enqueue', f'{package}.nope', *on, capsys=capsys)
        assert status == 1 and err.startswith(f"mqueue: no task named '{package}.nope' in {package}; it has ")
    finally:
        mqueue.default_registry.tasks = before
        mqueue.default_registry.table, mqueue.default_registry.cron_table = table, cron_table
        for module in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[module]
    row, = tasks_in(db, reg)
    assert (row['name'], row['queue'], row['priority'], json.loads(row['args'])) == (
        name, 'slow', 3, {'day': '2026-11-30', 'full': True})


def test_cli_errors_exit_1_with_one_line_and_usage_errors_exit_2(db, reg, capsys):
    on = ('--db', B.url)
    if B.dialect.name != 'sqlite':   # (on SQLite the CLI creates the tables)
        status, out, err = cli('status', *on, '--table', f't_none_{uuid.uuid4().hex[:8]}', capsys=capsys)
        assert (status, out) == (1, '') and err.count('\n') == 1 and 'run `mqueue init-db`' in err
        unreachable = B.url.replace(':3306/', ':1/').replace(':5432/', ':1/')
        status, out, err = cli('dead', '--db', unreachable, capsys=capsys)
        assert (status, out) == (1, '') and err.startswith('mqueue: cannot connect to ') and err.count('\n') == 1
    for argv, message in ((['status', '--db', 'oracle://x/y'], 'unsupported database URL scheme'),
                          (['status', '--db', 'sqlite://host/x.db'], 'bad SQLite URL'),
                          (['cancel', '1', '--db', 'mysql+odbc://x/y'], 'unknown driver'),
                          (['dead', '--db', 'mysql://[x/db'], 'bad database URL')):
        status, out, err = cli(*argv, capsys=capsys)
        assert (status, out) == (1, '') and err.startswith('mqueue: ') and message in err and err.count('\n') == 1
    for argv in (['retry', *on], ['enqueue', 'x', '--args', '{bad', *on], ['enqueue', 'x', '--args', '"s"', *on],
                 ['purge', *on], ['purge', '--older-than', 'a week', *on], ['dead', '--limit', '0', *on],
                 ['cancel', *on], ['cancel', 'x', *on], ['cancel', str(2 ** 64), *on], ['enqueue', '', *on],
                 ['status', '--queue', '', *on], ['dead', '--name', 'n' * 200, *on], ['enqueue', 'x', '--priority', '40000'],
                 ['status', '--bogus'], ['worker', *on], ['nope']):
        with pytest.raises(SystemExit) as exit_:
            mqueue.main(argv)
        assert exit_.value.code == 2, argv
        assert capsys.readouterr().err.startswith('usage: mqueue'), argv


@only('mariadb-pymysql')
def test_cli_commands_as_real_processes_against_mariadb(db, reg, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MQUEUE_DATABASE_URL=B.url)

    def mq(*argv):
        return subprocess.run([sys.executable, '-m', 'mqueue', *map(str, argv)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    on = ('--table', reg.table)
    first = mq('enqueue', 'mail.send', '--args', '["ann@example.com"]', *on)
    task_id = int(re.fullmatch(r'enqueued task (\d+) .*\n', first.stdout).group(1))
    dead = make_dead(db, reg, 'report', queue='reports', days_ago=3)
    assert [row['dead'] for row in json.loads(mq('status', '--json', *on).stdout)] == [0, 1]
    runs = {
        'status': mq('status', *on), 'dead': mq('dead', *on), 'dead --json': mq('dead', '--json', *on),
        'retry': mq('retry', dead, *on), 'cancel': mq('cancel', task_id, *on),
        'purge': mq('purge', '--older-than', '1d', *on),
    }
    assert {name: run.returncode for name, run in runs.items()} == dict.fromkeys(runs, 0), \
        {name: run.stderr for name, run in runs.items()}
    assert runs['status'].stdout.splitlines()[1].split()[:5] == ['default', '1', '0', '0', '0']
    assert runs['dead'].stdout.splitlines()[1].split()[:3] == [str(dead), 'reports', 'report']
    assert [task['id'] for task in json.loads(runs['dead --json'].stdout)] == [dead]
    assert runs['retry'].stdout == '1 dead task brought back\n'
    assert runs['cancel'].stdout == f'cancelled {task_id}\n' and runs['purge'].stdout == '0 dead tasks purged\n'
    assert [(row['id'], row['dead_at']) for row in tasks_in(db, reg)] == [(dead, None)]
    errors = {
        'missing table': mq('status', '--table', 'no_such_table_here'),
        'bad URL': mq('status', '--db', 'mysql://root@127.0.0.1:notaport/test', *on),
        'unreachable': mq('dead', '--db', B.url.replace(f':{MYSQL_PORT}/', ':1/'), *on),
        'not cancelled': mq('cancel', task_id, *on),
    }
    assert {name: run.returncode for name, run in errors.items()} == dict.fromkeys(errors, 1)
    for name, run in errors.items():
        assert run.stdout == '' and run.stderr.startswith('mqueue: ') and run.stderr.count('\n') == 1, (name, run.stderr)
    assert 'run `mqueue init-db`' in errors['missing table'].stderr
    usage = mq('purge', *on)
    assert usage.returncode == 2 and 'give --older-than AGE (dead tasks) or --results' in usage.stderr


# Discovery and CLI ###############################################################################


def test_worker_imports_every_module_of_a_tasks_package(reg, tmp_path, monkeypatch):
    package = f'tasks_{uuid.uuid4().hex[:8]}'
    make_tasks_package(tmp_path, package)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = dict(mqueue.default_registry.tasks)
    try:
        mqueue.Worker(connect, tasks=package)
        assert {f'{package}.mail.send', 'deep'} <= set(mqueue.default_registry.tasks)
    finally:
        mqueue.default_registry.tasks = before
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]


def test_cli_worker_runs_tasks_from_a_package(db, reg, tmp_path):
    package = f'tasks_{uuid.uuid4().hex[:8]}'
    make_tasks_package(tmp_path, package)
    enqueued(reg, 'deep', [str(tmp_path / 'out')])
    env = dict(os.environ, MQUEUE_DATABASE_URL=B.url, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, '-m', 'mqueue', 'worker', '--tasks', package, '--table', reg.table,
                           '--burst'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / 'out').read_text() == 'ran' and tasks_in(db, reg) == []
    bad = subprocess.run([sys.executable, '-m', 'mqueue', 'worker', '--db', B.url, '--tasks', 'no_such_pkg_x'],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "No module named 'no_such_pkg_x'" in bad.stderr


def test_cli_worker_no_rescue_leaves_a_dead_workers_tasks_to_the_lease(db, reg, tmp_path, monkeypatch):
    package = f'tasks_{uuid.uuid4().hex[:8]}'
    make_tasks_package(tmp_path, package)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(mqueue, 'default_registry', mqueue.Registry())   # the CLI's, which the package's tasks join
    monkeypatch.chdir(tmp_path)
    made = []

    class Recorded(mqueue.Worker):
        def __init__(self, *args, **options):
            super().__init__(*args, **options)
            made.append(self)
    monkeypatch.setattr(mqueue, 'Worker', Recorded)
    for flags, rescue_after in (([], mqueue.DEFAULT_RESCUE_AFTER), (['--no-rescue'], None)):
        enqueued(reg, 'deep', [str(tmp_path / 'out')])
        assert mqueue.main(['worker', '--db', B.url, '--tasks', package, '--table', reg.table, '--burst', *flags]) == 0
        assert made[-1].rescue_after == rescue_after and tasks_in(db, reg) == []


def test_cli_init_db_creates_the_tables_on_any_database(db, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    table, cron_table = f't_task_{suffix}', f't_cron_{suffix}'
    try:
        for _ in range(2):   # twice: IF NOT EXISTS
            done = subprocess.run([sys.executable, '-m', 'mqueue', 'init-db', '--db', B.url, '--table', table,
                                   '--cron-table', cron_table], capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert done.returncode == 0 and f'tables {table}, {cron_table} and {table}_result are ready' in done.stdout, \
                done.stderr
        for made in (table, cron_table, f'{table}_result'):
            assert query(db, f'SELECT COUNT(*) FROM {made}') == ((0,),)
    finally:
        drop_tables(table, cron_table, f'{table}_result')


@only('mariadb-connector')
def test_a_mysql_url_falls_back_to_mysql_connector_and_a_missing_driver_says_what_to_install(server, monkeypatch):
    for module in ('pymysql', 'MySQLdb'):
        monkeypatch.setitem(sys.modules, module, None)   # as if not installed
    conn = mqueue.connect_url(f'mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/test')()
    try:
        assert type(conn).__module__.startswith('mysql.connector') and query(conn, 'SELECT 1') == ((1,),)
    finally:
        conn.close()
    monkeypatch.setitem(sys.modules, 'mysql.connector', None)
    with pytest.raises(mqueue.MQueueError, match='pip install mysql-connector-python'):
        mqueue.connect_url(f'mysql+connector://root@{MYSQL_HOST}:{MYSQL_PORT}/test')()


@contextlib.contextmanager
def database_of_its_own(tmp_path):
    """The URL of a new database on the test's server, dropped after: for code that uses mqueue's
    default table names, as the demo does, which no other test or program may share (two demos at
    once on one database delete each other's tasks, or deadlock)."""
    if B.dialect.name == 'sqlite':
        yield f'sqlite:///{tmp_path}/own.db'
        return
    name = f't_db_{uuid.uuid4().hex[:10]}'
    admin = connect(autocommit=True)
    try:
        query(admin, f'CREATE DATABASE {name}')
        yield B.url.rsplit('/', 1)[0] + '/' + name
    finally:   # (PostgreSQL: FORCE, in case a backend of the program is still closing)
        query(admin, f'DROP DATABASE IF EXISTS {name}' + (' WITH (FORCE)' if B.dialect.name == 'postgresql' else ''))
        admin.close()


def test_readme_quick_start_example_runs(server, tmp_path):
    with database_of_its_own(tmp_path) as url:
        done = subprocess.run([sys.executable, str(ROOT / 'examples' / 'demo.py')], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, MQUEUE_DATABASE_URL=url))
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'task rows left in queue' in done.stdout and 'dead, last_error: ValueError' in done.stdout


def run_in_examples(code, url):
    """Run a block of docs/ as a reader who saved it in examples/ would, on a database; its output lines."""
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT / 'examples', capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, MQUEUE_DATABASE_URL=url, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_docs_api_and_hooks_examples_run_after_the_quick_start(server, tmp_path):
    """docs/api.md's enqueue in each form (MySQL only: its last query uses UTC_TIMESTAMP), then
    docs/hooks.md's event hooks, from examples/ after the quick start, in a database of their own:
    what they print has the shape the guides show (ids vary)."""
    import ast
    with database_of_its_own(tmp_path) as url:
        demo = subprocess.run([sys.executable, str(ROOT / 'examples' / 'demo.py')], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, MQUEUE_DATABASE_URL=url))
        assert demo.returncode == 0, demo.stdout + demo.stderr
        due = []
        if B.dialect.name == 'mysql':
            error, *rows = run_in_examples(readme_block('api-enqueue'), url)
            assert error.startswith('eta must be timezone-aware, e.g. datetime.now(timezone.utc)'), error
            rows = [ast.literal_eval(row) for row in rows]
            assert [row[1:] for row in rows] == [('["bob@example.com","Urgent"]', 0, -10),
                                                 ('["ann@example.com","Hi"]', 0, 0),
                                                 ('{"to":"ann@example.com","subject":"Later"}', 1, 0),
                                                 ('{"to":"bob@example.com","subject":"Tomorrow"}', 1, 0)]
            ids = [row[0] for row in rows]
            assert ids[1] < ids[2] < ids[0] < ids[3]   # the order they were enqueued in
            due = ids[:2]                              # the other two are for later
        *took, dead = run_in_examples(readme_block('hooks-events'), url)
    assert [re.fullmatch(r'task (\d+) tasks\.mail\.send took \d+\.\d ms', line).group(1) for line in took] == \
        [str(task_id) for task_id in due]
    assert re.fullmatch(r'task \d+ tasks\.mail\.send is dead after 3 attempts: '
                        r'ValueError: mailbox eve@invalid\.example does not exist', dead), dead


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_docs_cron_example_ticks_every_two_seconds_until_its_timer_stops_the_worker(server, tmp_path):
    """docs/crons.md's example, on the tables the quick start leaves (here: created), in a database
    of its own: a task per fire, every 2 s, for 5 s."""
    with database_of_its_own(tmp_path) as url:
        own = Backend(B.name, url).connect(autocommit=True)
        mqueue.Registry().create_tables(own)
        own.close()
        started = time.monotonic()
        lines = run_in_examples(readme_block('cron-tick'), url)
        took = time.monotonic() - started
    ids = [int(re.fullmatch(r'tick: task (\d+)', line).group(1)) for line in lines]
    assert 1 <= len(ids) <= 3 and ids == sorted(set(ids)), lines   # fires at even seconds, within 5 s
    assert 5 <= took < 60, took


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_docs_results_example_prints_pending_then_the_kept_value(server, tmp_path):
    assert run_docs_example('results', tmp_path) == ['pending', 'succeeded 5 1']


def run_docs_example(label, tmp_path):
    """A docs/ example, from examples/, on tables made as the quick start makes them, in a
    database of its own: the lines it prints."""
    with database_of_its_own(tmp_path) as url:
        own = Backend(B.name, url).connect(autocommit=True)
        mqueue.Registry().create_tables(own)
        own.close()
        return run_in_examples(readme_block(label), url)


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_docs_unique_example_gets_the_same_task_twice(server, tmp_path):
    assert run_docs_example('unique', tmp_path) == ['True True False']


@only('mariadb-pymysql', 'postgresql-psycopg', 'sqlite')
def test_docs_timeouts_example_ends_a_query_past_its_timeout(server, tmp_path):
    began = time.monotonic()
    assert run_docs_example('timeouts', tmp_path) == [
        'dead mqueue.TaskTimeout',
        'TaskTimeout: report() ran past its timeout of 1s; its database session was ended, and its writes rolled back']
    assert time.monotonic() - began < 20   # not the query's 30 s


@only('postgresql-psycopg')
def test_docs_asyncio_example_enqueues_in_a_psycopg_transaction_and_runs_an_async_task(server, tmp_path):
    assert run_docs_example('asyncio-aenqueue', tmp_path) == ['enqueued task 1', 'welcome ann@example.com in task 1']


# Hostile input ###################################################################################


def test_hostile_rows_end_as_documented_and_the_worker_carries_on(db, reg):
    ran = []
    reg.task(name='ok')(lambda *a, **k: ran.append((a, k)))
    nasty = "q'\"%s%%\\\x00😀" if B.dialect.name != 'postgresql' else "q'\"%s%%\\😀"   # (PostgreSQL text holds no NUL)
    rows = [
        ('truncated JSON', '{"a": [1, 2', 'ok', 'default', B.now, 'not valid JSON'),
        ('deep nesting', '[' * 100_000 + ']' * 100_000, 'ok', 'default', B.now, 'not valid JSON'),
        ('far past', '[]', 'ok', 'default', "'1000-01-01'", None),
        ('year 9999', '[]', 'ok', 'default', "'9999-12-31 23:59:59'", 'never due'),
        ('nasty name', '[]', nasty, 'default', B.now, 'UnknownTask'),
        ('nasty queue', '[]', 'ok', nasty[:30], B.now, 'not served'),
        ('multi-MB args', json.dumps(['x' * 3_000_000]), 'ok', 'default', B.now, None),
    ]
    ids = {}
    for label, args, name, queue, eta, _ in rows:
        returning = ' RETURNING id' if B.dialect.name == 'postgresql' else ''
        with cursor_of(db) as cursor:
            cursor.execute(f'INSERT INTO {reg.table} (args, eta, name, queue) VALUES (%s, {eta}, %s, %s){returning}',
                           (args, name, queue))
            ids[label] = cursor.fetchone()[0] if returning else cursor.lastrowid
    assert worker(reg).run(burst=True) == 5
    left = {r['id']: r for r in tasks_in(db, reg)}
    for label, _, _, _, _, outcome in rows:
        row = left.get(ids[label])
        if outcome is None:
            assert row is None, label                                   # ran and completed
        elif outcome in ('never due', 'not served'):
            assert row is not None and row['dead_at'] is None, label    # untouched
        else:
            assert row['dead_at'] is not None and outcome in row['last_error'], label
    assert left[ids['nasty name']]['name'] == nasty                   # stored and read back as data
    assert ran.count(((), {})) == 1 and any(a and len(a[0]) == 3_000_000 for a, _ in ran)


def test_sql_metacharacters_in_every_parameter_are_stored_as_data(db, reg):
    metas = ["'; DROP TABLE x; --", '" OR 1=1 --', '%s %(x)s %%', '\\', '`', '?', '$1']
    conn = connect()
    reg.enqueue(conn, 'x', ['\x00'], queue='q')                    # a NUL in args is JSON-escaped...
    for bad in ({'name': 'n\x00'}, {'name': 'x', 'queue': 'q\x00'}):  # ...and refused in names
        with pytest.raises(ValueError, match='NUL'):
            reg.enqueue(conn, bad['name'], [], queue=bad.get('queue'))
    for i, meta in enumerate(metas):
        reg.enqueue(conn, f'n{meta}'[:128], [meta], queue=f'q{meta}'[:32], priority=i)
        reg.enqueue(conn, 'x', {meta: meta})
    reg.enqueue_many(conn, f'm{metas[0]}', [[m] for m in metas], queue=f'q{metas[2]}')
    conn.commit()
    rows = tasks_in(db, reg)
    assert len(rows) == 3 * len(metas) + 1
    stored = {(r['name'], r['queue'], r['args']) for r in rows}
    for meta in metas:
        assert (f'n{meta}'[:128], f'q{meta}'[:32], json.dumps([meta], separators=(',', ':'))) in stored
    assert reg.retry_dead(conn, name=metas[0], queue=metas[1]) == 0
    conn.close()
    for bad in ('task; DROP TABLE x', 'task`', "task'", 'a b', 'a.b'):
        with pytest.raises(ValueError, match='plain identifier'):
            mqueue.Registry(table=bad)
        with pytest.raises(ValueError, match='plain identifier'):
            mqueue.Registry(cron_table=bad)


@pytest.mark.skipif(json_values is None, reason='pip install hypothesis')
def test_any_json_args_round_trip_through_enqueue_and_a_worker(db, reg):
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(args=st.lists(json_values, max_size=4) | st.dictionaries(st.from_regex(r'[a-z_][a-z0-9_]{0,8}', fullmatch=True),
                                                                  json_values, max_size=4))
    def round_trip(args):
        got = []
        name = f'echo{uuid.uuid4().hex[:6]}'
        reg.task(name=name)(lambda *a, **k: got.append(list(a) if isinstance(args, list) else k))
        enqueued(reg, name, args)
        assert worker(reg).run(burst=True) == 1
        assert got == [args]
    round_trip()


@only('mariadb-pymysql')
def test_a_worker_needs_only_row_privileges_on_the_four_tables(db, reg, tmp_path, capsys):
    """docs/databases.md's CREATE USER and GRANTs: SELECT, INSERT, UPDATE, DELETE on the task, cron,
    results and counts tables, nothing else."""
    import pymysql
    user, password = f'mq_{uuid.uuid4().hex[:8]}', 'pw-' + uuid.uuid4().hex[:8]
    statements = [statement.strip() for statement in readme_block('grants', 'sql').split(';') if statement.strip()]
    assert [statement.split()[0] for statement in statements] == ['CREATE'] + ['GRANT'] * 4, statements
    conn = None
    try:
        for statement in statements:   # (the user's host is 127.0.0.1: the test connects from there)
            statement = statement.replace("'mqueue_worker'@'%'", f"'{user}'@'127.0.0.1'").replace("'...'", f"'{password}'")
            statement = statement.replace('app.task_result', f"{DB['database']}.{reg.result_table}")
            statement = statement.replace('app.task_counts', f"{DB['database']}.{reg.counts_table}")
            statement = statement.replace('app.task ', f"{DB['database']}.{reg.table} ")
            query(db, statement.replace('app.cron', f"{DB['database']}.{reg.cron_table}"))
        ran = []
        reg.task(name='t', result=60)(lambda: ran.append(1))
        reg.cron('@hourly', name='c')(lambda: None)
        as_user = lambda: pymysql.connect(host=DB['host'], port=DB['port'], user=user, password=password,
                                          database=DB['database'], autocommit=False)
        conn = as_user()
        kept_id = reg.enqueue(conn, 't', [])
        conn.commit()
        conn.close()
        assert mqueue.Worker(as_user, registry=reg, poll_interval=0.01).run(burst=True) == 1 and ran == [1]
        assert query(db, f'SELECT status FROM {reg.result_table}') == (('succeeded',),)
        assert query(db, f'SELECT SUM(done) FROM {reg.counts_table}') == ((1,),)   # written as it stopped
        listing = mqueue._CronScheduler(reg, None, functools.partial(mqueue._transaction, as_user)).listing()
        assert [row['name'] for row in listing] == ['c']   # what `mqueue crons` reads
        conn = as_user()   # and what status, dead, retry, cancel and purge do
        dead_id = reg.enqueue(conn, 'gone', [])
        query(conn, f'UPDATE {reg.table} SET dead_at = UTC_TIMESTAMP(6) WHERE id = %s', (dead_id,))
        assert [row.dead for row in reg.queue_stats(conn)] == [1]
        assert [row.id for row in reg.dead_tasks(conn)] == [dead_id]
        assert reg.retry_dead(conn, [dead_id]) == 1 and reg.cancel(conn, dead_id)
        assert reg.purge_dead(conn, 0) == 0 and reg.purge_results(conn) == 0
        assert reg.result(conn, kept_id).status == 'succeeded'
        conn.commit()
    finally:
        if conn is not None:   # (an open transaction would keep the tables from being dropped)
            with contextlib.suppress(Exception):
                conn.close()
        query(db, f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


@pytest.mark.parametrize('version, ok', [
    ('10.11.19-MariaDB-0+deb12u1', True), ('10.6.0-MariaDB', True), ('10.5.27-MariaDB', False),
    ('5.5.5-10.3.39-MariaDB', False), ('8.0.36', True), ('8.0.1', True), ('8.0.0-dmr', False), ('5.7.44-log', False)])
@only('mariadb-pymysql')
def test_servers_without_skip_locked_are_refused_with_a_clear_message(reg, version, ok, monkeypatch):
    assert (mqueue.MySQL().refusal(version) is None) == ok
    if ok:
        return
    monkeypatch.setattr(mqueue.MySQL, 'connection_info', f"SELECT CONNECTION_ID(), '{version}'")
    reg.task(name='t')(lambda: None)
    with pytest.raises(mqueue.MQueueError, match=r'needs MariaDB 10\.6\+ or MySQL 8\.0\.1\+'):
        worker(reg).run(burst=True)


@only('mariadb-pymysql')   # (bench/soak.py KILLs MariaDB connections and restarts the server)
@pytest.mark.restarts_server
def test_a_soak_under_faults_loses_nothing_and_runs_nothing_twice(server):
    """The reduced soak (bench/soak.py has the full one): worker processes SIGKILLed and restarted,
    their connections KILLed, the server restarted, while 400 tasks (10 ms each, one in ten failing
    its first attempt) each write one ledger row through their transaction."""
    soak = soak_module()
    report = soak.soak(tasks=400, workers=2, seconds=5.0, restart=os.path.exists(soak.MARIADBD), seed=7)
    assert report['drained'] and report['left in table'] == 0, report
    assert report['duplicates'] == 0 and report['losses'] == 0, report
    assert report['faults']['worker SIGKILL'] >= 1 and report['faults']['connection KILL'] >= 1, report


# Several databases: one worker serving them in rotation (issue 18) ###########################

OTHER_MARIADB = 'mqueue_test_other'   # a second MariaDB database on the test server, created if missing
POSTGRESQL_URL = BACKENDS['postgresql-psycopg'].url


@pytest.fixture
def several(db, reg, tmp_path):
    """Two MariaDB databases, a PostgreSQL one and an SQLite file, each with the registry's
    tables (the first MariaDB one's are reg's own): label -> URL. Dropped after."""
    query(db, f'CREATE DATABASE IF NOT EXISTS {OTHER_MARIADB}')
    urls = {'mariadb': B.url, 'mariadb-other': f'mysql+pymysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{OTHER_MARIADB}',
            'postgresql': POSTGRESQL_URL, 'sqlite': f'sqlite:///{tmp_path / "several.db"}'}
    made = []
    try:
        for label in ('mariadb-other', 'postgresql', 'sqlite'):
            conn = mqueue.connect_url(urls[label])()
            made.append(urls[label])
            reg.create_tables(conn)
            conn.commit()
            conn.close()
        yield urls
    finally:
        for url in made:
            conn = mqueue.connect_url(url)()
            with cursor_of(conn) as cursor:
                for table in (reg.table, reg.cron_table, reg.result_table, reg.counts_table):
                    cursor.execute(f'DROP TABLE IF EXISTS {table}')
            conn.commit()
            conn.close()


def enqueue_into(url, reg, name, calls):
    """Enqueue one task per call (its args) into the database at url, committed; the ids."""
    conn = mqueue.connect_url(url)()
    try:
        ids = [reg.enqueue(conn, name, args) for args in calls]
        conn.commit()
        return ids
    finally:
        conn.close()


def tasks_left(url, reg):
    conn = mqueue.connect_url(url)()
    try:
        with cursor_of(conn) as cursor:
            cursor.execute(f'SELECT COUNT(*) FROM {reg.table}')
            return cursor.fetchone()[0]
    finally:
        conn.close()


@only('mariadb-pymysql')   # (and PostgreSQL and SQLite, through the several fixture)
def test_one_worker_serves_several_databases_a_batch_from_each_in_turn(reg, several):
    ran = []
    reg.task(name='where')(lambda label, n: ran.append((label, n)))
    for label, url in several.items():
        enqueue_into(url, reg, 'where', [[label, n] for n in range(6)])
    connects = [mqueue.connect_url(url) for url in several.values()]
    assert mqueue.Worker(connects, registry=reg, batch=2, poll_interval=0.01).run(burst=True) == 24
    batches = [ran[i:i + 2] for i in range(0, len(ran), 2)]
    assert [{label for label, _ in batch} for batch in batches] == [{label} for label in several] * 3   # in rotation
    assert sorted(ran) == sorted((label, n) for label in several for n in range(6))

    # Threads: each serves every database; every task runs once, and every table is emptied.
    ran.clear()
    for label, url in several.items():
        enqueue_into(url, reg, 'where', [[label, n] for n in range(60)])
    # (plain callables too, which have no description for the log to name them by)
    connects = [functools.partial(connect_) for connect_ in connects]
    worker_ = mqueue.Worker(connects, registry=reg, batch=5, concurrency=3, poll_interval=0.01)
    assert worker_.run(burst=True) == 240
    assert sorted(ran) == sorted((label, n) for label in several for n in range(60))   # none twice, none lost
    assert [tasks_left(url, reg) for url in several.values()] == [0, 0, 0, 0]


class TcpProxy:
    """A TCP forwarder in front of a server, for a test to take the server "down" (every
    connection through it cut, new ones refused) and bring it back on the same port, while the
    real server goes on serving the other tests."""

    def __init__(self, host, port):
        self.target, self.port, self._sockets, self._lock = (host, port), 0, [], threading.Lock()
        self.up()

    def up(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', self.port))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def down(self):
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)   # (wakes the accept)
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@only('mariadb-pymysql')
def test_a_database_that_is_down_delays_the_others_by_at_most_a_poll_interval(reg, several, caplog):
    proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT)   # the other MariaDB database, reached through it
    proxied = f'mysql+pymysql://root@127.0.0.1:{proxy.port}/{OTHER_MARIADB}'
    started = {}
    reg.task(name='note')(lambda label, n: started.setdefault((label, n), time.monotonic()))
    poll = 0.3
    urls = [several['mariadb'], proxied, several['postgresql'], several['sqlite']]
    worker_ = mqueue.Worker([mqueue.connect_url(url) for url in urls], registry=reg, poll_interval=poll)
    thread = threading.Thread(target=worker_.run, daemon=True)
    caplog.set_level(logging.INFO, logger='mqueue')
    thread.start()
    try:
        enqueue_into(several['mariadb-other'], reg, 'note', [['other', 0]])
        wait_for(lambda: ('other', 0) in started)   # connected to every database

        def latencies(rounds):
            """Tasks enqueued one at a time into the first MariaDB database and PostgreSQL: seconds
            from each commit to its start."""
            seconds = []
            for n in range(rounds):
                for label in ('mariadb', 'postgresql'):
                    key = (label, len(started))
                    enqueue_into(several[label], reg, 'note', [list(key)])
                    committed_at = time.monotonic()
                    wait_for(lambda: key in started, timeout=10)
                    seconds.append(started[key] - committed_at)
            return seconds
        up = latencies(5)
        proxy.down()
        enqueue_into(several['mariadb-other'], reg, 'note', [['other', 1]])   # (straight in, not through the proxy)
        down = latencies(12)   # over about three seconds: several failed reconnections, backing off
        assert ('other', 1) not in started
        # An idle database is polled every poll interval (±10%); a database that is down adds no
        # more than a failed connection attempt to that, and never a wait of its own.
        assert max(down) < poll * 1.1 * 2, (up, down)
        failures = [r.getMessage() for r in caplog.records if 'worker error' in r.getMessage()]
        assert len(failures) >= 2 and all(f'127.0.0.1:{proxy.port}/{OTHER_MARIADB}' in f for f in failures), failures
        proxy.up()
        wait_for(lambda: ('other', 1) in started, timeout=mqueue.ERROR_BACKOFF_MIN * 2 ** len(failures) * 1.1 + 5)
    finally:
        worker_.stop()
        thread.join(30)
        proxy.down()
    assert not thread.is_alive()
    assert [tasks_left(url, reg) for url in several.values()] == [0, 0, 0, 0]


@only('mariadb-pymysql')
def test_cli_commands_on_several_databases(db, reg, several, tmp_path, capsys):
    package = f'tasks_{uuid.uuid4().hex[:8]}'
    make_tasks_package(tmp_path, package)
    urls = [several['mariadb'], several['postgresql'], several['sqlite']]
    for n, url in enumerate(urls):
        enqueue_into(url, reg, 'deep', [[str(tmp_path / f'out{n}')]])
    dbs = [option for url in urls for option in ('--db', url)]
    tables = ['--table', reg.table, '--cron-table', reg.cron_table]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, '-m', 'mqueue', 'worker', *dbs, '--tasks', package, *tables, '--burst'],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [(tmp_path / f'out{n}').read_text() for n in range(3)] == ['ran'] * 3
    assert 'databases mysql://root@' in done.stderr   # the start line names them all

    for url in urls:
        make_dead_in(url, reg)
    assert mqueue.main(['dead', *dbs, *tables, '--json']) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry['database'] for entry in listed] == [mqueue.connect_url(url).description for url in urls]
    assert [[task['name'] for task in entry['result']] for entry in listed] == [['gone']] * 3
    assert mqueue.main(['retry', '--all', *dbs, *tables]) == 0
    out = capsys.readouterr().out
    assert out.count('1 dead task brought back') == 3 and out.index(mqueue.connect_url(urls[1]).description) > 0
    assert mqueue.main(['status', *dbs, *tables]) == 0
    assert capsys.readouterr().out.count('default') == 3

    assert mqueue.main(['init-db', *dbs, *tables]) == 0
    assert capsys.readouterr().out.count('are ready in') == 3

    # A database that cannot be reached, or a URL that cannot be read: the others are shown, it is
    # named, and the exit is 1.
    assert mqueue.main(['status', '--db', 'mysql://[x/db', '--db', urls[2], '--json', *tables]) == 1
    out, err = capsys.readouterr()
    assert [sorted(entry) for entry in json.loads(out)] == [['database', 'error'], ['database', 'result']]
    assert 'bad database URL' in err
    unreachable = f'mysql+pymysql://root:hush@127.0.0.1:{free_port()}/test'
    assert mqueue.main(['status', '--db', urls[0], '--db', unreachable, *tables]) == 1
    out, err = capsys.readouterr()
    assert out.count('default') == 1 and 'cannot connect to mysql://root@127.0.0.1' in err and 'hush' not in err
    for ids_command in (['cancel', '1'], ['retry', '1'], ['result', '1']):   # task ids are per database
        with pytest.raises(SystemExit) as exit_:
            mqueue.main([*ids_command, *dbs, *tables])
        assert exit_.value.code == 2
        assert 'give one --db' in capsys.readouterr().err


def make_dead_in(url, reg):
    conn = mqueue.connect_url(url)()
    try:
        task_id = reg.enqueue(conn, 'gone', [])
        with cursor_of(conn) as cursor:
            cursor.execute(mqueue._dialect_of(conn).render(
                'UPDATE {task} SET dead_at = {now}, retries = 4, last_error = %s WHERE id = %s', reg.table,
                reg.cron_table, {}), ('ValueError: boom', task_id))
        conn.commit()
    finally:
        conn.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_a_worker_over_several_databases_takes_connection_factories_only(tmp_path):
    factories = [mqueue.connect_url(f'sqlite:///{tmp_path / name}') for name in ('a.db', 'b.db')]
    with pytest.raises(ValueError, match='empty list'):
        mqueue.Worker([])
    with pytest.raises(ValueError, match='connection factory for each'):
        mqueue.Worker([factory() for factory in factories])
    with pytest.raises(ValueError, match='a transaction hook serves one database'):
        mqueue.Worker(factories, hooks={'transaction': contextlib.nullcontext})
    assert len(mqueue.Worker(factories, concurrency=2)._databases) == 2
    assert mqueue.Worker(factories[:1])._databases == []   # (a list of one is that one)


@only('mariadb-pymysql')
def test_on_a_galera_node_a_running_batch_holds_no_row_lock_and_renews_its_lease(db, reg, ledger, monkeypatch):
    """Galera's row locks are local to a node, so there the lease fences a running task from the
    other nodes' workers, renewed while it runs (test_galera.py shows it on a cluster). Here, on
    the one server, the workers are told they are a cluster's node: the row is not locked, and a
    second worker polling every 10 ms never takes the task in ten leases (nor rescues it)."""
    monkeypatch.setattr(mqueue.MySQL, 'cluster_probe', "SELECT 'wsrep_on', 'ON'")
    started, release, runs = threading.Event(), threading.Event(), []

    @reg.task(name='long')
    def long_():
        runs.append(mqueue.current().id)
        write_ledger(ledger)
        started.set()
        release.wait(30)
    task_id = enqueued(reg, 'long')
    lease = 0.5
    workers = [worker(reg, lease=lease) for _ in range(2)]
    threads = [threading.Thread(target=worker_.run, daemon=True) for worker_ in workers]
    threads[0].start()
    try:
        assert started.wait(10)
        threads[1].start()
        assert workers[0]._cluster and not workers[0]._can_rescue()
        wait_for(lambda: query(db, f'SELECT id FROM {reg.table} WHERE id = %s FOR UPDATE SKIP LOCKED',
                               (task_id,)) == ((task_id,),), timeout=2)   # (not while a renewal holds it)
        etas, ends = [], time.monotonic() + lease * 10
        while time.monotonic() < ends:   # (ten leases of the task running: the span under test)
            etas.append(seconds_until_eta(db, reg, task_id))
            assert reg.queue_stats(db)[0].running == 1
            time.sleep(lease / 5)
        assert min(etas) > 0 and len(etas) >= 20   # the lease was always ahead: renewed
    finally:
        release.set()
    wait_for(lambda: tasks_in(db, reg) == [])
    for worker_ in workers:
        worker_.stop()
    for thread in threads:
        thread.join(10)
    assert runs == [task_id] and query(db, f'SELECT COUNT(*) FROM {ledger}') == ((1,),)
    assert workers[0].stats['lock_conflicts'] == 0


@only('mysql')
def test_on_a_galera_node_every_task_takes_its_savepoint_before_it_starts(db, reg, monkeypatch):
    """There another node's commit can abort the batch between any two statements: met at a task's
    savepoint taken before it starts, not inside the task's code as it reads its connection."""
    monkeypatch.setattr(mqueue.MySQL, 'cluster_probe', "SELECT 'wsrep_on', 'ON'")
    reg.task(name='t')(lambda: None)
    with committed() as conn:
        for _ in range(3):
            reg.enqueue(conn, 't', [])
    sent = []
    w = recording_worker(reg, sent, batch=3)
    assert w.run_once() == 3 and w._cluster
    assert [sql for sql in sent if 'SAVEPOINT' in sql] == ['SAVEPOINT mqueue_0', 'SAVEPOINT mqueue_1',
                                                             'SAVEPOINT mqueue_2', 'RELEASE SAVEPOINT mqueue_0']


@only('mariadb-pymysql')
def test_on_a_galera_node_a_batch_whose_lease_ended_and_was_claimed_elsewhere_rolls_back(db, reg, ledger, monkeypatch):
    """If a running task's lease cannot be renewed (here: renewed once, then not for 50 s), a
    worker on another node may claim it and run it: the first batch then finds, before its
    commit, that the claim is no longer its own, and rolls back its writes. One effect."""
    monkeypatch.setattr(mqueue.MySQL, 'cluster_probe', "SELECT 'wsrep_on', 'ON'")
    monkeypatch.setattr(mqueue, 'LEASE_RENEW_AT', 100.0)
    second_done, runs = threading.Event(), []

    @reg.task(name='twice')
    def twice():
        runs.append(mqueue.current().retries)
        write_ledger(ledger, note=f'run {len(runs)}')
        if len(runs) == 1:
            assert second_done.wait(30)   # the lease ends meanwhile; the other worker runs it
        else:
            second_done.set()
    task_id = enqueued(reg, 'twice')
    first, second = worker(reg, lease=0.5), worker(reg, lease=0.5)
    threads = [threading.Thread(target=first.run, daemon=True)]
    threads[0].start()
    wait_for(lambda: runs)
    threads.append(threading.Thread(target=second.run, daemon=True))
    threads[1].start()
    wait_for(lambda: tasks_in(db, reg) == [] and not first._inflight)
    for worker_ in (first, second):
        worker_.stop()
    for thread in threads:
        thread.join(10)
    assert runs == [0, 1]   # the second run was the second attempt
    assert query(db, f'SELECT note FROM {ledger}') == (('run 2',),)   # the first run's write rolled back
