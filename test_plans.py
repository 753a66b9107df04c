"""The plans of the worker's hot-path statements on a big backlog: one queue holding 200,000 due and
1,000,000 future tasks, on MariaDB, PostgreSQL (psycopg 3 and psycopg2) and SQLite.

Every statement is the worker's own: a real ``run_once()`` and ``_probe()`` run on a connection that
records what they execute (the statements that claim, lease, lock and complete, with their
parameters); retry, bury and release are rendered as the worker renders them. Each must be an index
range or a primary-key lookup, with no scan of the table and no sort, and the claim's and probe's
range must be bounded by ``eta`` (so they never read the tasks scheduled for later). On PostgreSQL
the generic plan is checked too: psycopg 3 prepares a statement after five runs, and the server may
then switch to a plan made without the parameters' values.

Heavy (it fills each database with 1,200,000 rows): run it on its own, in one process::

    python3 -m pytest -q -n 0 test_plans.py

Tables are dropped after. Under CI=true an unreachable server fails the tests instead of skipping
them. MQUEUE_TEST_BACKENDS picks backends, as for test_mqueue.py.
"""

import json
import os
import re
import statistics
import time
import uuid

import pytest

import mqueue
import test_mqueue as suite

DUE, FUTURE = 200_000, 1_000_000
BATCH = 20
QUEUE = 'default'
BACKENDS = [name for name in suite.CHOSEN if name in ('postgresql-psycopg', 'postgresql-psycopg2',
                                                      'mariadb-pymysql', 'sqlite')]
pytestmark = pytest.mark.xdist_group('plans')   # one process builds each backlog once

# The backlog: future tasks first (so a scan meets them before any due one), due ones 70 at a time
# with one eta (as enqueue_many gives them), so id decides the order among them.
FILL = {
    'postgresql': [
        "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', (now() AT TIME ZONE 'UTC') "
        "+ INTERVAL '1 day' + g * INTERVAL '1 second', 'noop', '{queue}', 0 FROM generate_series(1, {future}) g",
        "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', (now() AT TIME ZONE 'UTC') "
        "- INTERVAL '1 hour' + (g / 70) * INTERVAL '1 millisecond', 'noop', '{queue}', 0 "
        "FROM generate_series(1, {due}) g",
        'ANALYZE {task}'],
    'mysql': [
        "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', UTC_TIMESTAMP(6) + INTERVAL 1 DAY "
        "+ INTERVAL seq SECOND, 'noop', '{queue}', 0 FROM seq_1_to_{future}",
        "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', UTC_TIMESTAMP(6) - INTERVAL 1 HOUR "
        "+ INTERVAL (seq DIV 70) * 1000 MICROSECOND, 'noop', '{queue}', 0 FROM seq_1_to_{due}",
        'ANALYZE TABLE {task}'],
    'sqlite': [
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {future}) "
        "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', strftime('%Y-%m-%d %H:%M:%f', "
        "'now', '+1 day', n || ' seconds'), 'noop', '{queue}', 0 FROM g",
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {due}) "
        "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', strftime('%Y-%m-%d %H:%M:%f', "
        "'now', '-1 hour', ((n / 70) / 1000.0) || ' seconds'), 'noop', '{queue}', 0 FROM g",
        'ANALYZE'],
}


# Fixtures ########################################################################################


class Backlog:
    """A backend and its database's task table, full of due and future tasks."""

    def __init__(self, backend, registry):
        self.backend, self.registry = backend, registry
        self.dialect = backend.dialect
        self.table = registry.table


@pytest.fixture(scope='module')
def backlogs(tmp_path_factory):
    """The filled table of each database ({dialect name: Backlog}), made when a test first needs
    it and dropped at the end; SQLite's in a file of its own."""
    made = {}
    sqlite = suite.Backend('sqlite', f"sqlite:///{tmp_path_factory.mktemp('plans') / 'plans.db'}")
    yield made, sqlite
    for backlog in made.values():
        drop(backlog.backend, backlog.registry)


@pytest.fixture(params=BACKENDS)
def backlog(request, backlogs):
    made, sqlite = backlogs
    backend = sqlite if request.param == 'sqlite' else suite.BACKENDS[request.param]
    try:
        backend.connect().close()
    except Exception as exc:
        message = f'{backend.name} at {backend.url} is unreachable: {exc}'
        pytest.fail(message) if os.environ.get('CI') else pytest.skip(message)
    database = backend.dialect.name
    if database not in made:
        suffix = uuid.uuid4().hex[:10]
        registry = mqueue.Registry(table=f't_plan_{suffix}', cron_table=f't_plancron_{suffix}', queue=QUEUE)
        made[database] = Backlog(backend, registry)   # dropped at the end, even if filling fails
        conn = backend.connect(autocommit=True)
        try:
            registry.create_tables(conn)
            cursor = conn.cursor()
            for statement in FILL[database]:
                cursor.execute(statement.format(task=registry.table, queue=QUEUE, due=DUE, future=FUTURE))
                if cursor.description:
                    cursor.fetchall()
            cursor.close()
        finally:
            conn.close()
    return Backlog(backend, made[database].registry)   # this backend's driver, the database's table


def drop(backend, registry):
    conn = backend.connect(autocommit=True)
    try:
        cursor = conn.cursor()
        for table in (registry.table, registry.cron_table, registry.result_table, registry.counts_table):
            cursor.execute(f'DROP TABLE IF EXISTS {table}')
        cursor.close()
    finally:
        conn.close()


# Recording the worker's statements ###############################################################


class Recorder:
    """A DB-API connection whose cursors record every statement and its parameters."""

    def __init__(self, conn, log):
        object.__setattr__(self, 'driver_connection', conn)   # mqueue tells the driver through it
        object.__setattr__(self, 'log', log)

    def cursor(self, *args, **kwargs):
        return RecordingCursor(self.driver_connection.cursor(*args, **kwargs), self.log)

    def __getattr__(self, name):
        return getattr(self.driver_connection, name)

    def __setattr__(self, name, value):
        setattr(self.driver_connection, name, value)


class RecordingCursor:
    def __init__(self, cursor, log):
        self.cursor, self.log = cursor, log

    def execute(self, sql, params=None):
        self.log.append((sql, tuple(params) if params is not None else ()))
        return self.cursor.execute(sql, params) if params is not None else self.cursor.execute(sql)

    def __getattr__(self, name):
        return getattr(self.cursor, name)

    def __iter__(self):
        return iter(self.cursor)


def noop():
    pass


def recording_worker(backlog, log, *priorities, other_queue=None):
    """A worker serving the backlog's queue through recorded connections; a task at each of these
    priorities makes another (queue, priority) range to claim from, and other_queue another queue
    at priority 0 (none of them is waiting)."""
    registry = mqueue.Registry(table=backlog.registry.table, cron_table=backlog.registry.cron_table, queue=QUEUE)
    registry.task(name='noop')(noop)
    for priority in priorities:
        registry.task(name=f'urgent{priority}', priority=priority)(noop)
    queues = [QUEUE]
    if other_queue:
        registry.task(name='elsewhere', queue=other_queue)(noop)
        queues.append(other_queue)
    opener = backlog.backend.opener

    def connect():
        return Recorder(opener(), log)
    connect.description = getattr(opener, 'description', backlog.backend.url)
    return mqueue.Worker(connect, queues, registry=registry, batch=BATCH, poll_interval=0.01)


def hot_statements(backlog):
    """The worker's hot-path statements on the backlog, as it runs them: [(label, sql, params)],
    and how long a run_once() took, in milliseconds."""
    log = []
    # three ranges (two queues at priority 0, claimed together where a UNION ALL can); 40 (more than
    # MAX_PRIORITIES: the claim reads which are due first); one range
    for w in (recording_worker(backlog, log, -5, other_queue='elsewhere'),
              recording_worker(backlog, log, *range(1, 40)), recording_worker(backlog, log)):
        try:
            assert w.run_once() == BATCH            # next-priority lookups, claim, lease; lock, run, complete
            w._go_idle()                            # as after an empty claim: the next step probes first
            started = time.perf_counter()
            assert w.run_once() == BATCH
            run_once_ms = (time.perf_counter() - started) * 1000
        finally:
            w._discard_connection()
    some_id = a_due_id(backlog)
    statements = []
    for sql, params in log:
        label = label_of(w, sql, len(params))
        if label and (label, sql, params) not in statements:
            statements.append((label, sql, params))
    statements += [   # by id, rendered as the worker renders them: a failure and a shutdown are not staged here
        ('retry', w._sql(mqueue.SQL_RETRY), (5_000_000, 'error', '[]', some_id)),
        ('bury', w._sql(mqueue.SQL_BURY), ('error', '[]', 0, some_id)),
        ('release', w._sql(mqueue.SQL_RELEASE), (some_id, 1)),
    ]
    statements += [   # the rescue of a dead worker's tasks: its look ran above, these by id
        ('rescue-lock', w._sql(mqueue.SQL_RESCUE_LOCK, ids=1), (-2_000_000, some_id)),
        ('rescue', w._sql(mqueue.SQL_RESCUE, ids=1), (some_id,))]
    return statements, run_once_ms


def label_of(w, sql, n_params):
    """Which hot-path statement this is, or None for one that does not touch the task table."""
    table = w.registry.table
    if not re.search(rf'\b{table}\b', sql):
        return None
    if ' UNION ALL ' in sql:   # the claim's blocks (MySQL), the probe's (and the rescue's look), the due pairs'
        blocks = {'claim-union': mqueue.SQL_CLAIM, 'probe-union': mqueue.SQL_PROBE, 'due-pairs': mqueue.SQL_DUE_PAIRS}
        return next(label for label, statement in blocks.items()
                    if sql.startswith((f'({w._sql(statement)})', w.dialect.union_member.format(w._sql(statement)))))
    known = {'claim': w._sql(mqueue.SQL_CLAIM), 'probe': w._sql(mqueue.SQL_PROBE),
             'rescue-find': w._sql(mqueue.SQL_RESCUE_FIND), 'next-priority': w._sql(mqueue.SQL_NEXT_PRIORITY)}
    for label, statement in (('lease', mqueue.SQL_LEASE), ('lock', mqueue.SQL_LOCK), ('complete', mqueue.SQL_COMPLETE)):
        known[label] = w._sql(statement, ids=n_params - 3 * (label == 'lease'))   # (the lease: its time, deadline, worker)
    for label, text in known.items():
        if sql == text:
            return label
    raise AssertionError(f'the worker ran a statement on the task table this test does not check: {sql}')


def a_due_id(backlog):
    conn = backlog.backend.connect(autocommit=True)
    try:
        return suite.query(conn, f'SELECT MIN(id) FROM {backlog.table} WHERE eta <= {backlog.backend.now}')[0][0]
    finally:
        conn.close()


BY_ID = {'lease', 'lock', 'complete', 'retry', 'bury', 'release', 'rescue-lock', 'rescue'}
RESCUE = {'rescue-find', 'rescue-lock', 'rescue'}
EXPECTED = {   # the statements each database runs; MySQL joins a priority's queues by UNION ALL, and the
    # probe joins its ranges and the rescue's look into one statement
    'mysql': {'claim', 'claim-union', 'probe-union', 'due-pairs', 'next-priority'} | BY_ID | RESCUE,
    'postgresql': {'claim', 'probe-union', 'due-pairs', 'next-priority'} | BY_ID | RESCUE,
    'sqlite': {'claim', 'probe-union', 'due-pairs', 'next-priority'} | BY_ID | RESCUE,
}
# Bounded by eta <= now (the claim's, probe's and due pairs'), or by claimed_at (the rescue's look,
# from the claimed index), stopping at the batch.
RANGES = ('claim', 'claim-union', 'probe', 'probe-union', 'due-pairs', 'rescue-find')


# Plans ###########################################################################################


def test_every_hot_path_statement_is_an_index_range_or_a_key_lookup_without_a_sort(backlog, capsys):
    statements, run_once_ms = hot_statements(backlog)
    assert {label for label, _, _ in statements} == EXPECTED[backlog.dialect.name]
    conn = backlog.backend.connect()
    try:
        check = {'postgresql': check_postgresql, 'mysql': check_mysql, 'sqlite': check_sqlite}[backlog.dialect.name]
        problems = []
        for label, sql, params in statements:
            try:
                check(backlog, conn, label, sql, params)
            except AssertionError as exc:   # report every statement's plan, not just the first
                problems.append(str(exc).splitlines()[0])
            conn.rollback()
        assert not problems, '\n'.join(problems)
        # the claim of the range holding the due tasks
        sql, params = next((sql, params) for label, sql, params in statements if label == 'claim' and params[1] == 0)
        claim_ms = timed(conn, sql, params)
    finally:
        conn.rollback()
        conn.close()
    if backlog.backend.name == 'postgresql-psycopg':
        check_psycopg_prepared(backlog)
    with capsys.disabled():
        print(f'\n  {backlog.backend.name}: {DUE:,} due + {FUTURE:,} future tasks: claim statement '
              f'{claim_ms:.3f} ms (median), Worker.run_once() of {BATCH} no-op tasks {run_once_ms:.1f} ms')


def timed(conn, sql, params, runs=15):
    """The median milliseconds of a statement, each run in a transaction rolled back."""
    times = []
    cursor = conn.cursor()
    for _ in range(runs):
        started = time.perf_counter()
        cursor.execute(sql, params)
        cursor.fetchall()
        times.append((time.perf_counter() - started) * 1000)
        conn.rollback()
    cursor.close()
    return statistics.median(times)


# PostgreSQL


def check_postgresql(backlog, conn, label, sql, params):
    table = backlog.table
    writes = label in ('lease', 'complete', 'retry', 'bury', 'release', 'rescue')
    cursor = conn.cursor()
    # the custom plan: as psycopg2 always runs it, and psycopg 3 a statement's first runs
    plan = pg_explain(cursor, sql, params, analyze=not writes)
    conn.rollback()
    check_pg_plan(label, plan, table, analyzed=not writes)
    # the generic plan: what a prepared statement may switch to after five runs
    plan = pg_explain_generic(cursor, sql, params, analyze=not writes)
    conn.rollback()
    cursor.execute('DEALLOCATE mqueue_plan')
    cursor.close()
    check_pg_plan(label + ' (generic plan)', plan, table, analyzed=not writes)


def pg_explain(cursor, sql, params, analyze):
    cursor.execute(f'EXPLAIN ({"ANALYZE, " if analyze else ""}FORMAT JSON) {sql}', params)
    return pg_plan_of(cursor.fetchone()[0])


def pg_explain_generic(cursor, sql, params, analyze):
    numbered = iter(range(1, 1000))
    cursor.execute(f'PREPARE mqueue_plan({", ".join(pg_type(p) for p in params)}) AS '
                   + re.sub('%s', lambda _: f'${next(numbered)}', sql))
    cursor.execute('SET LOCAL plan_cache_mode = force_generic_plan')
    cursor.execute(f'EXPLAIN ({"ANALYZE, " if analyze else ""}FORMAT JSON) EXECUTE mqueue_plan'
                   f'({", ".join(pg_literal(p) for p in params)})')
    return pg_plan_of(cursor.fetchone()[0])


def pg_type(value):
    """The parameter's type as psycopg 3 sends it: the smallest integer type that holds it."""
    if isinstance(value, str):
        return 'text'
    if value is None:   # (sent untyped: the server infers it, as it does for the lease's deadline)
        return 'unknown'
    if isinstance(value, bool):
        return 'boolean'
    return next(name for name, bits in (('smallint', 15), ('integer', 31), ('bigint', 63)) if abs(value) < 2 ** bits)


def pg_literal(value):
    if value is None:
        return 'NULL'
    if isinstance(value, bool):
        return str(value).lower()
    return str(int(value)) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def pg_plan_of(value):
    return (json.loads(value) if isinstance(value, str) else value)[0]['Plan']


def pg_nodes(node):
    yield node
    for child in node.get('Plans', ()):
        yield from pg_nodes(child)


def check_pg_plan(label, plan, table, analyzed):
    nodes = list(pg_nodes(plan))
    described = ' > '.join(f"{n['Node Type']}{' on ' + n['Index Name'] if 'Index Name' in n else ''}" for n in nodes)
    types = {n['Node Type'] for n in nodes}
    assert not types & {'Seq Scan', 'Sort', 'Incremental Sort'}, f'{label}: {described}'
    scans = [n for n in nodes if 'Scan' in n['Node Type'] and n['Node Type'] != 'Subquery Scan']   # (a UNION's blocks)
    assert scans, f'{label}: {described}'
    if label.split()[0] in ('claim', 'probe', 'probe-union', 'due-pairs', 'rescue-find', 'next-priority'):
        # index ranges, read in order (no bitmap: it would fetch every match before the LIMIT): the
        # claim index's bounded by eta, the claimed index's (the rescue's) by claimed_at
        for scan in scans:
            index = scan.get('Index Name')
            assert scan['Node Type'] in ('Index Scan', 'Index Only Scan') and index in (
                f'{table}_claim', f'{table}_claimed'), f'{label}: {described}'
            assert (index == f'{table}_claimed') == (label.split()[0] == 'rescue-find' or (
                label.split()[0] == 'probe-union' and scan is scans[-1])), f'{label}: {described}'
            condition = scan.get('Index Cond', '')
            if label.split()[0] != 'next-priority':
                bound = r'\bclaimed_at <' if index == f'{table}_claimed' else r'\beta <='
                assert re.search(bound, condition), f'{label}: the range is not bounded: {condition}'
        if analyzed:   # it read about the batch (or one row), not the 200,000 due tasks
            read = sum(n.get('Actual Rows', 0) + n.get('Rows Removed by Filter', 0) for n in scans)
            assert read <= BATCH * 2, f'{label}: read {read} rows: {described}'
    else:   # by id: the primary key
        assert all(n.get('Index Name') == f'{table}_pkey' for n in scans), f'{label}: {described}'


def check_psycopg_prepared(backlog):
    """As the worker runs it: psycopg 3 prepares the claim at its sixth run; the server plans it
    with the values five times more, then may keep a generic plan. Either must be a range."""
    w = recording_worker(backlog, [])
    try:
        for _ in range(12):
            assert w.run_once() == BATCH
        conn = w._local.connection.driver_connection
        cursor = conn.cursor()
        cursor.execute('SELECT name, generic_plans, custom_plans FROM pg_prepared_statements '
                       'WHERE NOT from_sql AND statement LIKE %s', (f'% FROM {backlog.table} %FOR UPDATE SKIP LOCKED',))
        prepared = cursor.fetchall()
        assert len(prepared) == 1, prepared
        name, generic, custom = prepared[0]
        assert generic + custom >= 6, prepared
        for mode in ('auto', 'force_generic_plan'):
            cursor.execute(f'SET LOCAL plan_cache_mode = {mode}')
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}('{QUEUE}', 0, {BATCH})")
            plan = pg_plan_of(cursor.fetchone()[0])
            conn.commit()   # it wrote nothing (and psycopg drops its prepared statements at a rollback)
            check_pg_plan(f'claim (prepared by psycopg, plan_cache_mode {mode})', plan, backlog.table, analyzed=True)
        cursor.close()
    finally:
        w._discard_connection()


# MySQL / MariaDB


def check_mysql(backlog, conn, label, sql, params):
    table = backlog.table
    cursor = conn.cursor()
    cursor.execute('EXPLAIN ' + sql, params)
    columns = [column[0] for column in cursor.description]
    rows = [dict(zip(columns, row)) for row in cursor.fetchall()]
    described = '; '.join(f"{r['table']} {r['type']} {r['key']} {r['Extra']}" for r in rows)
    for row in rows:
        extra = row['Extra'] or ''
        if row['table'] == table:
            assert row['type'] in ('range', 'ref', 'eq_ref', 'const'), f'{label}: {described}'
            keys = {'PRIMARY'} if label in BY_ID else {'claimed'} if label == 'rescue-find' else \
                {'claim', 'claimed'} if label == 'probe-union' else {'claim'}
            assert row['key'] in keys, f'{label}: {described}'
            assert 'filesort' not in extra and 'temporary' not in extra, f'{label}: {described}'
        elif (row['table'] or '').startswith('<union'):
            # UNION ALL's own ORDER BY ... LIMIT sorts what its blocks returned: at most a batch
            # per range, never the backlog
            assert row['select_type'] == 'UNION RESULT' and label == 'claim-union', f'{label}: {described}'
        else:
            # MIN() answered by one dive into the index's edge while planning; or a row read by
            # its primary key while planning (the staged rescue-lock's row is not claimed)
            assert row['table'] is None and (extra in ('Select tables optimized away', 'No matching min/max row') or (
                label in BY_ID and extra == 'Impossible WHERE noticed after reading const tables')), \
                f'{label}: {described}'
    if label in RANGES or label == 'next-priority':
        cursor.execute('ANALYZE FORMAT=JSON ' + sql, params)
        analyzed = json.loads(cursor.fetchone()[0])
        conn.rollback()
        accesses = list(mysql_accesses(analyzed, table))
        if label == 'next-priority':   # MIN() read from the index's edge: no table access at all
            assert accesses == [], f'{label}: {analyzed}'
        assert accesses or label == 'next-priority', f'{label}: {analyzed}'
        for access in accesses:
            assert {'eta', 'claimed_at'} & set(access.get('used_key_parts', ())), \
                f'{label}: the range is not bounded by eta or claimed_at: {access}'
            assert access.get('r_rows', 0) <= BATCH * 2, f'{label}: read {access.get("r_rows")} rows: {access}'
    cursor.close()


def mysql_accesses(node, table):
    """The table accesses in MariaDB's ANALYZE FORMAT=JSON output."""
    if isinstance(node, dict):
        if node.get('table_name') == table:
            yield node
        for value in node.values():
            yield from mysql_accesses(value, table)
    elif isinstance(node, list):
        for value in node:
            yield from mysql_accesses(value, table)


# SQLite


def check_sqlite(backlog, conn, label, sql, params):
    table = backlog.table
    details = [row[3] for row in conn.execute('EXPLAIN QUERY PLAN ' + sql, params).fetchall()]
    if label in ('probe-union', 'due-pairs'):   # its blocks, each a subquery read once: their searches count
        assert all(d in ('COMPOUND QUERY', 'LEFT-MOST SUBQUERY', 'UNION ALL', 'CO-ROUTINE member', 'SCAN member')
                   or d.startswith('SEARCH ') for d in details), f'{label}: {details}'
        details = [d for d in details if d.startswith('SEARCH ')]
        label = 'probe'
    for detail in details:
        assert detail.startswith('SEARCH ') and 'TEMP B-TREE' not in detail, f'{label}: {details}'
    claimed = [d for d in details if re.search(rf'USING (COVERING )?INDEX {table}_claimed \(claimed_at<', d)]
    if label == 'probe':   # its blocks from the claim index, bounded by eta; the rescue's look from the claimed one
        due = [d for d in details if re.search(rf'USING (COVERING )?INDEX {table}_claim \(', d) and 'eta<' in d]
        assert due and len(due) + len(claimed) == len(details) and len(claimed) <= 1, f'{label}: {details}'
    elif label == 'rescue-find':
        assert len(details) == 1 and claimed, f'{label}: {details}'
    elif label in ('claim', 'next-priority'):
        assert len(details) == 1 and re.search(rf'USING (COVERING )?INDEX {table}_claim \(', details[0]), \
            f'{label}: {details}'
        if label != 'next-priority':
            assert 'eta<' in details[0], f'{label}: the range is not bounded by eta: {details}'
    else:
        assert details and all('USING INTEGER PRIMARY KEY' in d for d in details), f'{label}: {details}'
