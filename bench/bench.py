"""mqueue's benchmark: on MariaDB, PostgreSQL and SQLite side by side, raw floors, mqueue's drains,
enqueues and latency, and the peer queues of each database; then issue 14's targets, met or MISSED.

    pip install -e '.[bench]' && python bench/bench.py     # all three databases, with peers: about 10 minutes
    python bench/bench.py --quick --no-peers                # one round, fewer tasks: about 1 minute
    python bench/bench.py --quick --database postgresql     # one database (repeatable)

The databases: MariaDB (or MySQL) through PyMySQL, PostgreSQL through psycopg 3, SQLite in a file
of the temp folder; MQUEUE_BENCH_MYSQL, MQUEUE_BENCH_POSTGRESQL and MQUEUE_BENCH_SQLITE give other
URLs. Every measure runs once per round, round after round, each database in turn, so drift on a
shared machine hits them all alike; a line gives the median and the min-max over the rounds, and
the targets are ratios of medians from the same run. Every drain checks that every task ran
exactly once: the worker processes count their calls, and the table must be empty after. The last
line is the whole result as JSON; the exit code is 0 only if every target is met.

Each round, on each database:
- the floors, hand-written SQL on ONE connection with nothing but the database's own work: claim
  rows with the claim's locking read and delete them, 1 row or 10 per transaction; INSERT + COMMIT
  one row at a time (taking turns with mqueue's enqueues by blocks of 100 commits, on a connection
  each); executemany 100 rows per commit;
- mqueue's drains with 1, 2 and 4 worker processes (batch 20), and at 2: over 8 priorities, of
  tasks that read their connection (each takes its savepoint), that keep their results, that have
  a timeout; its enqueue, one task per commit (and with a unique key), and enqueue_many, 1,000 per
  call;
- the peer queues of that database (bench/peers.py) at the process counts each supports (Redis's,
  under MariaDB's, as context);
- the latency from enqueue's commit to the task's start at 200 tasks/s: on PostgreSQL a NOTIFY
  wakes the worker (it polls once a second only), the others poll every 10 ms;
- the statements an idle worker sends per poll interval;
- PostgreSQL: 2,000 tasks drained with 200,000 waiting, and with 2,000;
- MariaDB: the same-SQL loop (mqueue's statements, no library code), 1 process x 4 threads, READ
  COMMITTED, and a drain beside 1,000,000 rows that are not due (with the claim's plan).
Once per run: the statements and round trips per task at batch 20 (bench/statements.py's counting
connection), of no-op tasks and of tasks that read their connection, and on MariaDB a worker's
memory growth over 200,000 tasks.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from typing import NamedTuple

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH))
sys.path.insert(0, BENCH)
import mqueue  # noqa: E402
import statements  # noqa: E402

DATABASES = {
    'mysql': os.environ.get('MQUEUE_BENCH_MYSQL', 'mysql+pymysql://root@127.0.0.1:3306/test'),
    'postgresql': os.environ.get('MQUEUE_BENCH_POSTGRESQL', 'postgresql+psycopg://postgres@127.0.0.1:5432/test'),
    'sqlite': os.environ.get('MQUEUE_BENCH_SQLITE', f'sqlite:///{tempfile.gettempdir()}/mqueue-bench.db'),
}
# The sizes of a run, and of a --quick one (about 1.5 minutes with the peers). Sized on the 2-core
# development machine, where a round takes about 65 s on MariaDB, 40 s on PostgreSQL, 17 s on SQLite
# and 60 s for the peers (at 2,000 tasks), and the memory measure 45 s: about 10 minutes in all,
# within a budget of 25 even with the machine twice as busy. (The JSON line gives the
# seconds each measure took.)
FULL = {'rounds': 3, 'tasks': 20_000, 'peer_tasks': 2_000, 'scale_rows': 1_000_000, 'memory_tasks': 200_000,
        'latency_seconds': 5.0}
QUICK = {'rounds': 1, 'tasks': 3_000, 'peer_tasks': 1_000, 'scale_rows': 100_000, 'memory_tasks': 20_000,
         'latency_seconds': 3.0}
PROCESSES = (1, 2, 4)        # worker processes of mqueue's drains
BACKLOG = (200_000, 2_000)   # PostgreSQL: tasks waiting when the backlog drains start...
BACKLOG_DRAINED = 2_000      # ...and how many each drains
# Forked, not spawned: a drain's processes inherit the Database, its registry and its tasks.
FORK = multiprocessing.get_context('fork')


class Database:
    """One database under test: its URL, dialect, and a table of its own."""

    def __init__(self, name, url):
        self.name, self.url, self.connect = name, url, mqueue.connect_url(url)
        self.table = f'bench_{uuid.uuid4().hex[:8]}'
        self.registry = mqueue.Registry(table=self.table, cron_table=self.table + '_cron', dialect=name)
        self.registry.task(name='noop')(count_call)
        self.registry.task(name='noop kept', result=3600)(count_call)   # its result (null) kept an hour
        self.registry.task(name='noop connection')(count_call_reading_connection)
        self.registry.task(name='stamp')(stamp_start)
        self.dialect = mqueue.DIALECTS[name]

    def sql(self, statement, **lists):
        return self.registry.sql(statement, self.dialect, **lists)

    def execute(self, statement, params=()):
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(statement, params)
            rows = cursor.fetchall() if cursor.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def version(self):
        """The server's version (SQLite's library's), e.g. 'PostgreSQL 15.10'."""
        version = str(self.execute(self.dialect.connection_info)[0][1])
        return {'postgresql': ' '.join(version.split()[:2]), 'sqlite': f'SQLite {version}'}.get(self.name, version)

    def reset(self):
        self.drop()
        conn = self.connect()
        self.registry.create_tables(conn)
        conn.commit()
        conn.close()

    def drop(self):
        conn = self.connect()
        cursor = conn.cursor()
        cursor.execute(f'DROP TABLE IF EXISTS {self.table}')
        cursor.execute(f'DROP TABLE IF EXISTS {self.table}_cron')
        cursor.execute(f'DROP TABLE IF EXISTS {self.registry.result_table}')
        cursor.execute(f'DROP TABLE IF EXISTS {self.registry.counts_table}')
        conn.commit()
        conn.close()

    def fill(self, n, priorities=1, name='noop'):
        """n due no-op tasks (not timed), spread evenly over priorities 0 to priorities - 1."""
        conn = self.connect()
        for priority in range(priorities):
            share = n // priorities + (priority < n % priorities)
            for start in range(0, share, 5000):
                self.registry.enqueue_many(conn, name, [[]] * min(5000, share - start), priority=priority)
        conn.commit()
        conn.close()

    def left(self):
        return self.execute(f'SELECT COUNT(*) FROM {self.table}')[0][0]


_calls = [0]
_calls_lock = threading.Lock()   # a worker of several threads counts from each


def count_call():
    """The no-op task: counts its calls in this process; a drain sums its processes' counts."""
    with _calls_lock:
        _calls[0] += 1


def count_call_reading_connection():
    """The no-op task that reads its connection, as a task that writes does first: it takes its
    savepoint (one statement more per task)."""
    mqueue.current().connection
    count_call()


_started = []   # (task id, time.time()) of each stamp task this process ran


def stamp_start():
    """The latency's task: notes when it started."""
    _started.append((mqueue.current().id, time.time()))


# Drains, each in processes started together ######################################################

def in_processes(database, target, workers, *args):
    """Run target(database, *args) in `workers` processes; the wall time and the calls they made
    (a floor: the rows it deleted)."""
    ready = FORK.Barrier(workers + 1)
    calls = FORK.Queue()
    procs = [FORK.Process(target=_gated, args=(ready, calls, database, target, args)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait(60)   # (a process that fails to connect breaks the barrier: no wait for ever)
    began = time.perf_counter()
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f'{target.__name__} failed in a worker process')
    elapsed = time.perf_counter() - began
    return elapsed, sum(calls.get(timeout=10) for _ in procs)


def _gated(ready, calls, database, target, args):
    prepared = target(database, *args, prepare=True)   # connected before the clock starts
    ready.wait()
    calls.put(target(database, *args, prepared=prepared))


def drain_rate(database, n, target, workers, *args, priorities=1, name='noop'):
    """Tasks per second draining n due tasks (spread over `priorities`) with target in `workers`
    processes; raises unless each ran exactly once."""
    database.reset()
    database.fill(n, priorities, name)
    elapsed, ran = in_processes(database, target, workers, *args)
    exactly_once(database, n, ran)
    return n / elapsed


def exactly_once(database, n, ran, left=0):
    """Raise unless n tasks ran and `left` rows are left: a task lost or run twice shows here."""
    rows = database.left()
    if ran != n or rows != left:
        raise RuntimeError(f'{database.name}: {ran} of {n} tasks ran, {rows} rows left of {left}: not exactly once')


# The floors: hand-written SQL on one connection ###################################################

# The floor's claim: the due rows in claim order, locked, skipping those another connection holds.
FLOOR_CLAIM = ('SELECT id FROM {task}{claim_index} WHERE queue = %s AND dead_at IS NULL AND priority = 0 '
               'AND eta <= {now} ORDER BY eta, id LIMIT %s{skip_locked}')
FLOOR_DELETE = 'DELETE FROM {task} WHERE id IN ({ids})'
FLOOR_INSERT = "INSERT INTO {task} (args, eta, name, queue, retries, priority) VALUES ('[]', {now}, 'noop', 'default', 0, 0)"
FLOOR_INSERT_ROW = "INSERT INTO {task} (args, eta, name, queue, retries, priority) VALUES (%s, {now}, %s, %s, 0, 0)"


def floor_drain(database, rows_per_transaction, prepare=False, prepared=None):
    """The raw floor: claim rows, delete them, commit; the rows it deleted."""
    if prepare:
        conn = database.connect()
        database.dialect.take_over(conn)   # transactional (SQLite: BEGIN IMMEDIATE issued below)
        return conn
    conn, deleted = prepared, 0
    claim = database.sql(FLOOR_CLAIM)
    cursor = conn.cursor()
    while True:
        if database.dialect.begin:
            cursor.execute(database.dialect.begin)
        cursor.execute(claim, ('default', rows_per_transaction))
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute(database.sql(FLOOR_DELETE, ids=len(ids)), ids)
        conn.commit()
        if not ids:
            return deleted
        deleted += len(ids)


def commit_rate(database, rows, per_commit, write):
    """Rows written per second by write(conn, cursor) calls of per_commit rows, each followed by a
    commit, on one connection; raises unless all `rows` are in the table after."""
    if rows % per_commit:
        raise ValueError(f'{rows} rows do not make whole commits of {per_commit}')
    database.reset()
    conn = database.connect()
    cursor = conn.cursor()
    began = time.perf_counter()
    for _ in range(rows // per_commit):
        write(conn, cursor)
        conn.commit()
    elapsed = time.perf_counter() - began
    conn.close()
    if database.left() != rows:
        raise RuntimeError(f'{database.name}: {database.left()} rows written of {rows}')
    return rows / elapsed


def executemany_rows(database, n, rows=100):
    statement = database.sql(FLOOR_INSERT_ROW)
    return commit_rate(database, n, rows, lambda conn, cursor: cursor.executemany(
        statement, [('[]', 'noop', 'default')] * rows))


# mqueue ##########################################################################################

ENQUEUE_RAW = "enqueue's statement raw, new cursor+COMMIT"   # (one_row_commits' name for it)


def one_row_commits(database, n, block=100):
    """Rows per second of the floor's INSERT + COMMIT, enqueue's statement sent raw + COMMIT,
    mqueue's enqueue + COMMIT and its enqueue with a unique key + COMMIT, n each, each on a
    connection of its own, taking turns by blocks of `block` commits: a commit waits for the disk,
    whose pace on a shared machine drifts within a second, so measured one after the other their
    ratio swung from 0.77 to 0.94 between rounds."""
    floor = database.sql(FLOOR_INSERT)
    keys = iter(range(n))
    # enqueue's own statement and parameters (its RETURNING and NOTIFY on PostgreSQL), sent raw on
    # a new cursor, as code that does not own the caller's connection must: what the driver and the
    # database cost enqueue, without mqueue's Python
    enqueue_now, params, _ = database.registry._insert_now(None, 'noop', '[]', None, None)

    def enqueue_statement(conn, cursor):
        cursor = conn.cursor()
        cursor.execute(enqueue_now, params)
        cursor.fetchone() if database.dialect.enqueue_returning else cursor.lastrowid
        cursor.close()
    writers = {
        'floor INSERT+COMMIT': lambda conn, cursor: cursor.execute(floor),
        ENQUEUE_RAW: enqueue_statement,
        'mqueue enqueue+COMMIT': lambda conn, cursor: database.registry.enqueue(conn, 'noop', []),
        'mqueue enqueue+COMMIT, unique key': lambda conn, cursor: database.registry.enqueue(
            conn, 'noop', [], unique=f'key {next(keys)}'),
    }
    rows = n // block * block   # (each writer's)
    database.reset()
    connections = {name: database.connect() for name in writers}
    cursors = {name: conn.cursor() for name, conn in connections.items()}
    seconds = dict.fromkeys(writers, 0.0)
    names = list(writers)
    for turn in range(rows // block):
        for name in names[turn % len(names):] + names[:turn % len(names)]:   # (each first in turn)
            conn, cursor, write = connections[name], cursors[name], writers[name]
            began = time.perf_counter()
            for _ in range(block):
                write(conn, cursor)
                conn.commit()
            seconds[name] += time.perf_counter() - began
    for conn in connections.values():
        conn.close()
    if database.left() != rows * len(writers):
        raise RuntimeError(f'{database.name}: {database.left()} rows written of {rows * len(writers)}')
    return {name: rows / seconds[name] for name in writers}


def mqueue_enqueue_many(database, n, rows=1000):
    return commit_rate(database, n, rows, lambda conn, cursor: database.registry.enqueue_many(
        conn, 'noop', [[] for _ in range(rows)]))


def mqueue_drain(database, batch, threads=1, isolation=None, timeout=None, prepare=False, prepared=None):
    """One worker process running until no task is due; the tasks it ran. With a timeout, every
    task is watched (and the worker runs its tasks in a thread of its own)."""
    if prepare:
        worker = mqueue.Worker(database.connect, ['default'], registry=database.registry, batch=batch,
                               concurrency=threads, isolation=isolation, crons=False, timeout=timeout)
        if threads == 1 and timeout is None:
            worker._open()   # (a worker of several threads opens one connection per thread as it starts it)
        return worker
    _calls[0] = 0
    prepared.run(burst=True)
    return _calls[0]


def mqueue_drain_part(database, batch, share, prepare=False, prepared=None):
    """One worker process running batches until it has run `share` tasks (or finds none due);
    the tasks it ran."""
    if prepare:
        worker = mqueue.Worker(database.connect, ['default'], registry=database.registry, batch=batch, crons=False)
        worker._open()
        return worker
    _calls[0], done = 0, 0
    while done < share:
        ran = prepared.run_once()
        if not ran:
            break
        done += ran
    prepared._discard_connection()
    return _calls[0]


def backlog_drain_rate(database, waiting, n, batch, workers=2):
    """Tasks per second draining n of `waiting` due tasks with `workers` processes."""
    database.reset()
    database.fill(waiting)
    # The statistics autovacuum would gather within a minute on a live system: without them, the
    # plan of a table just filled would depend on whether autovacuum happens to run mid-drain.
    database.execute({'mysql': 'ANALYZE TABLE {task}', 'sqlite': 'ANALYZE'}.get(database.name, 'ANALYZE {task}')
                     .format(task=database.table))
    elapsed, ran = in_processes(database, mqueue_drain_part, workers, batch, n // workers)
    exactly_once(database, n, ran, left=waiting - n)
    return n / elapsed


def latency(database, seconds, rate=200.0, poll=0.01):
    """Milliseconds from enqueue's commit to the task's start, one task every 1/rate s for
    `seconds`, one worker process: the median and the 99th percentile. On PostgreSQL the worker
    polls once a second only, so what is measured is the NOTIFY sent at enqueue's commit waking it."""
    database.reset()
    poll = 1.0 if database.dialect.notify else poll
    ready, stop, out = FORK.Event(), FORK.Event(), FORK.Queue()
    proc = FORK.Process(target=_serve_stamps, args=(database, poll, ready, stop, out))
    proc.start()
    if not ready.wait(30):
        raise RuntimeError(f'{database.name}: the latency worker did not start')
    time.sleep(0.3)   # past its first, empty claim: idle
    conn = database.connect()
    committed, n = {}, int(rate * seconds)
    began = time.perf_counter()
    for i in range(n):
        task_id = database.registry.enqueue(conn, 'stamp')
        conn.commit()
        committed[task_id] = time.time()
        pause = began + (i + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    conn.close()
    deadline = time.monotonic() + 30
    while database.left() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    started = out.get(timeout=30)
    proc.join(10)
    if sorted(task_id for task_id, _ in started) != sorted(committed):
        raise RuntimeError(f'{database.name}: {len(started)} starts for {n} tasks: not exactly once')
    waits = sorted(at - committed[task_id] for task_id, at in started)
    return {'latency p50 ms': waits[len(waits) // 2] * 1000, 'latency p99 ms': waits[int(len(waits) * 0.99)] * 1000}


def _serve_stamps(database, poll, ready, stop, out):
    _started.clear()
    worker = mqueue.Worker(database.connect, ['default'], registry=database.registry, poll_interval=poll,
                           crons=False)
    worker._open()
    threading.Thread(target=lambda: (stop.wait(), worker.stop()), daemon=True).start()
    ready.set()
    worker.run()
    out.put(list(_started))


def idle_statements_per_poll(database, poll=0.05, seconds=2.0):
    """Round trips (statements and commits) an idle worker makes per poll interval, past its
    start-up and first empty claim."""
    database.reset()
    counts = statements.Counts()
    worker = mqueue.Worker(lambda: statements.CountingConnection(database.connect(), counts), ['default'],
                           registry=database.registry, poll_interval=poll, crons=False)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(1.0)
    counts.counting = True
    time.sleep(seconds)
    counts.counting = False
    worker.stop()
    thread.join(10)
    return sum(counts.sent.values()) / (seconds / poll)


def statements_per_task(database, n, batch, name='noop'):
    """Statements, and round trips (statements and commits), per task of one worker draining n
    tasks; the worker's set-up statements left out."""
    database.reset()
    database.fill(n, name=name)
    counts = statements.Counts()
    worker = mqueue.Worker(lambda: statements.CountingConnection(database.connect(), counts), ['default'],
                           registry=database.registry, batch=batch, crons=False)
    worker._open()
    counts.counting = True
    _calls[0] = 0
    worker.run(burst=True)
    exactly_once(database, n, _calls[0])
    sent = counts.sent
    reading = ', reading its connection' if name != 'noop' else ''
    return {f'statements per task{reading}': sum(count for kind, count in sent.items()
                                                 if kind not in ('commit', 'rollback')) / n,
            f'round trips per task{reading}': sum(sent.values()) / n}


# MariaDB's extras ################################################################################

def same_sql_drain(database, batch, prepare=False, prepared=None):
    """mqueue's own statements (its named SQL) for each batch of no-op tasks, with no library
    code: claim and lease, commit; re-lock, the delete, commit (a task that never reads its
    connection takes no savepoint). The rows it deleted."""
    if prepare:   # a connection set up as the worker's is
        return mqueue.Worker(database.connect, ['default'], registry=database.registry, crons=False)._open()
    conn, deleted = prepared, 0
    cursor = conn.cursor()
    while True:
        ids = _claim_and_lease(database, conn, cursor, batch)
        if not ids:
            return deleted
        if database.dialect.begin:
            cursor.execute(database.dialect.begin)
        cursor.execute(database.sql(mqueue.SQL_LOCK, ids=len(ids)), ids)
        cursor.fetchall()
        cursor.execute(database.sql(mqueue.SQL_COMPLETE, ids=len(ids)), ids)
        conn.commit()
        deleted += len(ids)


def _claim_and_lease(database, conn, cursor, batch):
    while True:
        try:
            if database.dialect.begin:
                cursor.execute(database.dialect.begin)
            cursor.execute(database.sql(mqueue.SQL_CLAIM), ('default', 0, batch))
            ids = [row[0] for row in cursor.fetchall()]
            if ids:
                cursor.execute(database.sql(mqueue.SQL_LEASE, ids=len(ids)),
                               [int(mqueue.DEFAULT_LEASE * 1e6), None, mqueue._worker_id(), *ids])
            conn.commit()
            return ids
        except Exception as exc:
            if not mqueue._lock_conflict(exc):   # as the worker does: a claim's lock conflict is retried
                raise
            conn.rollback()


# n rows that are not due: half scheduled a month ahead, half dead (MariaDB's sequence engine).
IDLE_ROWS = ("INSERT INTO {task} (args, eta, name, queue, retries, priority, dead_at) "
             "SELECT '[]', UTC_TIMESTAMP(6) + INTERVAL 30 DAY, 'noop', 'default', 0, 0, "
             "IF(seq % 2, UTC_TIMESTAMP(6), NULL) FROM seq_1_to_{n}")


def beside_idle_rows(database, n_idle, n, batch, workers=2):
    """Drain rate of n tasks with n_idle rows that are not due in the table, and the claim's plan."""
    database.reset()
    conn = database.connect()
    cursor = conn.cursor()
    cursor.execute(IDLE_ROWS.format(task=database.table, n=n_idle))
    conn.commit()
    cursor.execute(f'ANALYZE TABLE {database.table}')
    cursor.fetchall()
    cursor.execute('EXPLAIN ' + database.sql(mqueue.SQL_CLAIM), ('default', 0, batch))
    plan = cursor.fetchall()[0]
    conn.close()
    database.fill(n)
    elapsed, ran = in_processes(database, mqueue_drain, workers, batch)
    exactly_once(database, n, ran, left=n_idle)
    return n / elapsed, {'type': plan[3], 'key': plan[5], 'extra': plan[9]}


def memory_growth(database, n, batch):
    """MB one worker process's RSS grew from its 10,000th task to its n-th."""
    database.reset()
    database.fill(n)
    out = FORK.Queue()
    proc = FORK.Process(target=_measure_memory, args=(database, batch, out))
    proc.start()
    first, last, ran = out.get(timeout=900)
    proc.join()
    exactly_once(database, n, ran)
    return last - first


def _measure_memory(database, batch, out):
    def rss():
        with open('/proc/self/status') as status:
            return next(int(line.split()[1]) for line in status if line.startswith('VmRSS')) / 1024
    first = []

    def sample(context, **info):
        if _calls[0] == 10_000:
            first.append(rss())
    _calls[0] = 0
    mqueue.Worker(database.connect, ['default'], registry=database.registry, batch=batch, crons=False,
                  hooks={'task_succeeded': sample}).run(burst=True)
    out.put((first[0] if first else float('nan'), rss(), _calls[0]))


# Peers ###########################################################################################

class Peer(NamedTuple):
    """A peer of bench/peers.py, as this run measures it."""
    name: str
    database: str           # where it keeps its tasks: 'mysql', 'postgresql', 'sqlite' or 'redis'
    processes: tuple
    settings: str

    @property
    def section(self):
        """The database it is shown under: Redis's peers under MariaDB's, as context."""
        return 'mysql' if self.database == 'redis' else self.database


# Where main's bench/peers.py (PEERS a list of names, one process each) runs each of its peers.
PEER_DATABASES = {'rq': 'redis', 'huey-redis': 'redis', 'celery-sqlalchemy': 'mysql',
                  'procrastinate': 'postgresql', 'huey-sqlite': 'sqlite'}


def load_peers():
    import peers
    listed = peers.PEERS if isinstance(peers.PEERS, dict) else dict.fromkeys(peers.PEERS)
    return [Peer(name, getattr(peer, 'database', PEER_DATABASES.get(name, 'redis')),
                 tuple(getattr(peer, 'processes', (1,))), getattr(peer, 'settings', ''))
            for name, peer in listed.items()]


def peer_drain(peer, n, processes):
    import peers
    if processes == 1:   # (main's peers.py takes no process count)
        return peers.drain_rate(peer.name, n)
    return peers.drain_rate(peer.name, n, processes=processes)


def peer_enqueue_many(peer, n):
    import peers
    return peers.enqueue_many_rate(peer.name, n)


# The run #########################################################################################

def main(argv=None):
    args = parse(argv)
    began = time.perf_counter()
    databases = [Database(name, DATABASES[name]) for name in dict.fromkeys(args.database or DATABASES)]
    peers = [] if args.no_peers else load_peers()
    run = Run(args, databases, peers)
    plans = {db.name: plan(db, args, [peer for peer in peers if peer.section == db.name]) for db in databases}
    try:
        for round_ in range(args.rounds):
            print(f'round {round_ + 1} of {args.rounds}', flush=True)
            for db in databases:
                for name, function, peer in plans[db.name]:
                    run.measure(db.name, name, function, peer)
        for db in databases:   # once per run: statement counts are exact, and memory needs many tasks
            run.measure(db.name, 'statements per task', lambda db=db: statements_per_task(db, 2000, args.batch))
            run.measure(db.name, 'statements per task, reading its connection',
                        lambda db=db: statements_per_task(db, 2000, args.batch, 'noop connection'))
            if db.name == 'mysql':
                run.measure(db.name, 'memory growth MB', lambda db=db: memory_growth(db, args.memory_tasks, args.batch))
    finally:
        for db in databases:
            db.drop()
    run.report(time.perf_counter() - began)
    return 0 if all(t['status'] == 'met' for t in run.targets) else 1


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--database', choices=list(DATABASES), action='append',
                        help='one database (repeatable; default all three)')
    parser.add_argument('--quick', action='store_true',
                        help=', '.join(f'{k.replace("_", "-")} {v:,}' for k, v in QUICK.items()) + ' unless given')
    parser.add_argument('--rounds', type=int, help=f'default {FULL["rounds"]}')
    parser.add_argument('--tasks', type=int, help=f'tasks per drain (default {FULL["tasks"]:,})')
    parser.add_argument('--peer-tasks', type=int, help=f'tasks per peer drain (default {FULL["peer_tasks"]:,})')
    parser.add_argument('--no-peers', action='store_true', help='no peer queues (their targets: skipped)')
    parser.add_argument('--batch', type=int, default=mqueue.DEFAULT_BATCH, help="mqueue's batch size (default 20)")
    parser.add_argument('--scale-rows', type=int, help=f'MariaDB: rows not due (default {FULL["scale_rows"]:,})')
    parser.add_argument('--memory-tasks', type=int, help=f'MariaDB: tasks of the memory measure '
                                                         f'(default {FULL["memory_tasks"]:,})')
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def plan(db, args, peers):
    """One round's measures on db, in order: (name, function, peer or None)."""
    n, batch = args.tasks, args.batch
    steps = [
        ('floor 1 row/txn', lambda: drain_rate(db, n, floor_drain, 1, 1)),
        ('floor 10 rows/txn', lambda: drain_rate(db, n, floor_drain, 1, 10)),
        ('one-row commits', lambda: one_row_commits(db, min(n, 3000))),   # (floor INSERT+COMMIT, mqueue enqueue+COMMIT...)
        ('floor executemany 100', lambda: executemany_rows(db, n)),
        ('mqueue enqueue_many 1000', lambda: mqueue_enqueue_many(db, n)),
    ]
    # mqueue at a peer's process counts too: the base of its ratio (Redis's peers have none)
    for w in sorted(set(PROCESSES).union(*(peer.processes for peer in peers if peer.database == db.name))):
        if db.name == 'mysql' and w in PROCESSES:
            steps.append((f'same-SQL W={w}', lambda w=w: drain_rate(db, n, same_sql_drain, w, batch)))
        steps.append((f'mqueue W={w}', lambda w=w: drain_rate(db, n, mqueue_drain, w, batch)))
    steps.append(('mqueue W=2, 8 priorities', lambda: drain_rate(db, n, mqueue_drain, 2, batch, priorities=8)))
    steps.append(('mqueue W=2, reading its connection',
                  lambda: drain_rate(db, n, mqueue_drain, 2, batch, name='noop connection')))
    steps.append(('mqueue W=2, results kept', lambda: drain_rate(db, n, mqueue_drain, 2, batch, name='noop kept')))
    steps.append(('mqueue W=2, timeout', lambda: drain_rate(db, n, mqueue_drain, 2, batch, 1, None, 60.0)))
    if db.name == 'mysql':
        steps += [
            ('mqueue 1 process x 4 threads', lambda: drain_rate(db, n, mqueue_drain, 1, batch, 4)),
            ('mqueue W=2 READ COMMITTED', lambda: drain_rate(db, n, mqueue_drain, 2, batch, 1, 'READ COMMITTED')),
            ('mqueue W=2 beside idle rows', lambda: beside_idle_rows(db, args.scale_rows, n, batch)),
        ]
    if db.name == 'postgresql':   # (pgqueuer's one process runs its jobs concurrently: mqueue's threads do that)
        steps.append(('mqueue 1 process x 4 threads', lambda: drain_rate(db, n, mqueue_drain, 1, batch, 4)))
        steps += [(f'mqueue W=2, {BACKLOG_DRAINED:,} of {waiting:,} waiting',
                   lambda waiting=waiting: backlog_drain_rate(db, waiting, BACKLOG_DRAINED, batch))
                  for waiting in BACKLOG]
    steps = [(name, function, None) for name, function in steps]
    for peer in peers:
        steps += [(f'{peer.name} W={w}', lambda peer=peer, w=w: peer_drain(peer, args.peer_tasks, w), peer)
                  for w in peer.processes]
        if peer.name == 'pgqueuer':
            steps.append(('pgqueuer enqueue_many', lambda peer=peer: peer_enqueue_many(peer, n), peer))
    return steps + [
        ('latency', lambda: latency(db, args.latency_seconds), None),
        ('idle statements per poll', lambda: idle_statements_per_poll(db), None),
    ]


class Run:
    """The figures of one run, and what they say about the targets."""

    def __init__(self, args, databases, peers):
        self.args, self.databases, self.peers = args, databases, peers
        self.values = {db.name: {} for db in databases}     # name -> [value per round]
        self.skipped = {db.name: {} for db in databases}    # name -> why a peer could not run
        self.failed = {db.name: {} for db in databases}     # name -> the error of a measure of mqueue's
        self.seconds = {db.name: {} for db in databases}    # name -> seconds it took, all rounds
        self.settings = {db.name: {} for db in databases}   # peer's name -> its settings
        self.plans = []                                     # MariaDB's claim plans
        self.targets = []

    def measure(self, db, name, function, peer=None):
        if name in self.skipped[db] or name in self.failed[db]:
            return
        began = time.perf_counter()
        try:
            value = function()
        except Exception as exc:   # a peer that cannot run here, or a measure that failed: say why, go on
            reason = (str(exc) if type(exc).__name__ == 'Skip' else f'{type(exc).__name__}: {exc}').strip()
            reason = reason.splitlines()[0][:300] if reason else type(exc).__name__
            (self.skipped if peer else self.failed)[db][name] = reason
            print(f'  {db} {name}: {"skipped" if peer else "FAILED"} ({reason})', flush=True)
            return
        finally:
            self.seconds[db][name] = self.seconds[db].get(name, 0) + time.perf_counter() - began
        if peer:
            self.settings[db][name] = peer.settings
        if isinstance(value, tuple):   # the drain beside idle rows, and the claim's plan
            value, claim_plan = value
            self.plans.append(claim_plan)
        for key, figure in (value if isinstance(value, dict) else {name: value}).items():
            self.values[db].setdefault(key, []).append(figure)
            print(f'  {db} {key}: {number(figure)}', flush=True)

    def median(self, db, name):
        values = self.values.get(db, {}).get(name)
        return statistics.median(values) if values else None

    def report(self, wall):
        args = self.args
        print(f'\nmqueue {mqueue.__version__}: {args.rounds} round(s), {args.tasks:,} no-op tasks per drain, '
              f'{args.peer_tasks:,} per peer drain, batch {args.batch}, {os.cpu_count()} cores; '
              f'median (min-max) per second, unless a unit is named')
        versions = {}
        for db in self.databases:
            versions[db.name] = db.version()
            print(f'\n{db.name}: {versions[db.name]} ({db.url.split("://")[0]})')
            values = self.values[db.name]
            width = max(map(len, [*values, *self.skipped[db.name], *self.failed[db.name]]), default=0) + 2
            for name, figures in values.items():
                settings = self.settings[db.name].get(name, '')
                print(f'  {name:{width}}{number(statistics.median(figures)):>10}  '
                      f'({number(min(figures))}-{number(max(figures))}){"  " + settings if settings else ""}')
            for name, reason in self.skipped[db.name].items():
                print(f'  {name:{width}}skipped: {reason}')
            for name, reason in self.failed[db.name].items():
                print(f'  {name:{width}}FAILED: {reason}')
        if 'mysql' in self.values and self.median('mysql', 'mqueue W=2 READ COMMITTED'):
            print(f'\nmysql: READ COMMITTED / the server default (REPEATABLE READ) at W=2: '
                  f'{self.median("mysql", "mqueue W=2 READ COMMITTED") / self.median("mysql", "mqueue W=2"):.2f}')
        for db in self.values:
            if self.median(db, ENQUEUE_RAW) and self.median(db, 'floor INSERT+COMMIT'):
                print(f"\n{db}: enqueue's statement sent raw on a new cursor / floor INSERT+COMMIT: "
                      f"{self.median(db, ENQUEUE_RAW) / self.median(db, 'floor INSERT+COMMIT'):.2f} (the statement's "
                      f"share of enqueue's distance from the floor; the rest is mqueue's)")
        if 'postgresql' in self.values and self.median('postgresql', 'pgqueuer W=1'):
            print(f'\npostgresql: mqueue 1 process x 4 threads / pgqueuer W=1 (one process each, running its tasks '
                  f'concurrently): {self.median("postgresql", "mqueue 1 process x 4 threads") / self.median("postgresql", "pgqueuer W=1"):.2f}')
        self.check()
        print()
        for t in self.targets:
            print(f'{t["status"]:7} {t["database"]:11}{t["target"]}' + ('' if t['value'] is None else f': {t["value"]}')
                  + f' (goal {t["goal"]})' + (f': {t["why"]}' if t['why'] else ''))
        print(f'\nwall time {wall / 60:.1f} min: ' + ', '.join(
            f'{db} {sum(seconds.values()) / 60:.1f}' for db, seconds in self.seconds.items()) + ' (minutes measuring)')
        print(json.dumps({
            'mqueue': mqueue.__version__, 'rounds': args.rounds, 'tasks': args.tasks, 'peer_tasks': args.peer_tasks,
            'batch': args.batch, 'cores': os.cpu_count(), 'wall_seconds': round(wall, 1),
            'databases': {db.name: {
                'version': versions[db.name],
                'medians': {name: statistics.median(v) for name, v in self.values[db.name].items()},
                'min_max': {name: [min(v), max(v)] for name, v in self.values[db.name].items()},
                'skipped': self.skipped[db.name], 'failed': self.failed[db.name],
                'settings': self.settings[db.name],
                'seconds': {name: round(s, 1) for name, s in self.seconds[db.name].items()},
            } for db in self.databases},
            'claim_plans': self.plans, 'targets': self.targets}))

    # The targets: issue 14's ##################################################################

    def check(self):
        for db in self.values:
            getattr(self, f'check_{db}')()
            self.check_peers(db)
            if db == 'postgresql':
                self.at_most(db, 'latency p50 ms', 2.0, 'latency p50 ms (200/s, NOTIFY)')
            else:   # half the poll interval, and a millisecond
                self.at_most(db, 'latency p50 ms', 0.01 / 2 * 1000 + 1, 'latency p50 ms (200/s, poll 10 ms)')
            self.ratio(db, 'mqueue W=2, 8 priorities', 'mqueue W=2', 0.8, '8-priority drain / one priority (W=2)')
            # issue 15's options, against the plain drain and enqueue (goals of 0.8: ours, the issue set none)
            self.ratio(db, 'mqueue W=2, results kept', 'mqueue W=2', 0.8, 'drain keeping results / plain (W=2)')
            self.ratio(db, 'mqueue enqueue+COMMIT, unique key', 'mqueue enqueue+COMMIT', 0.8,
                       'enqueue with a unique key / plain')
            self.ratio(db, 'mqueue W=2, timeout', 'mqueue W=2', 0.9, 'drain of tasks with a timeout / plain (W=2)')
            self.at_most(db, 'statements per task', 1.1, f'statements per task at batch {self.args.batch}',
                         also='round trips per task')
            # the same aim for tasks that read their connection (as a task that writes does): each
            # takes its savepoint there
            self.at_most(db, 'statements per task, reading its connection', 1.1,
                         f'statements per task at batch {self.args.batch}, tasks reading their connection',
                         also='round trips per task, reading its connection')
            self.at_most(db, 'idle statements per poll', 1.05, 'idle statements per poll interval', goal='<= 1')

    def check_postgresql(self):
        db = 'postgresql'
        for w in PROCESSES:
            self.ratio(db, f'mqueue W={w}', f'pgqueuer W={w}', 1.3)
        self.ratio(db, 'mqueue W=4', 'floor 10 rows/txn', 0.5)
        self.ratio(db, 'mqueue enqueue+COMMIT', 'floor INSERT+COMMIT', 0.9)
        self.enqueue_overhead(db)
        self.ratio(db, 'mqueue enqueue_many 1000', 'pgqueuer enqueue_many', 1.0)
        many, few = (f'mqueue W=2, {BACKLOG_DRAINED:,} of {waiting:,} waiting' for waiting in BACKLOG)
        self.ratio(db, many, few, 0.8, f'drain with {BACKLOG[0]:,} waiting / with {BACKLOG[1]:,}')

    def check_mysql(self):
        db = 'mysql'
        drains = {w: self.median(db, f'mqueue W={w}') for w in PROCESSES}
        best = max((w for w in drains if drains[w]), key=drains.get, default=PROCESSES[-1])
        self.ratio(db, f'mqueue W={best}', 'floor 10 rows/txn', 1.0,
                   f'best mqueue drain (W={best}) / floor 10 rows/txn')
        for w in (2, 4):
            self.ratio(db, f'mqueue W={w}', 'floor 1 row/txn', 3.0)
            self.ratio(db, f'mqueue W={w}', f'same-SQL W={w}', 0.85)
            for peer, on in (('celery-sqlalchemy', 'mysql'), ('rq', 'mysql'), ('procrastinate', 'postgresql')):
                self.ratio(db, f'mqueue W={w}', f'{peer} W=1', 5.0, over=on)
        self.ratio(db, 'mqueue enqueue+COMMIT', 'floor INSERT+COMMIT', 0.9)
        self.enqueue_overhead(db)
        self.ratio(db, 'mqueue enqueue_many 1000', 'floor executemany 100', 0.8)
        self.at_most(db, 'latency p99 ms', 14.0, 'latency p99 ms (200/s, poll 10 ms)')
        self.ratio(db, 'mqueue W=2 beside idle rows', 'mqueue W=2', 0.8,
                   f'W=2 with {self.args.scale_rows:,} idle rows / without')
        if self.plans:
            plan = self.plans[-1]
            by_index = (plan['type'] in ('range', 'ref') and plan['key'] == 'claim'
                        and 'filesort' not in (plan['extra'] or ''))
            self.add(db, f"claim plan: {plan['type']} on index {plan['key']}, {plan['extra']}", None,
                     'range or ref on index claim, no filesort', 'met' if by_index else 'MISSED')
        else:
            self.add(db, 'claim plan', None, 'range or ref on index claim, no filesort',
                     *self.why_missing(db, 'mqueue W=2 beside idle rows'))
        self.at_most(db, 'memory growth MB', 9.99, f'worker RSS growth MB over {self.args.memory_tasks:,} tasks',
                     goal='< 10')

    def enqueue_overhead(self, db):
        """mqueue's own share of enqueue's distance from the floor (a goal of 0.9: ours): against its
        statement sent raw on a new cursor. The rest, the statement's (the id back, a NOTIFY on
        PostgreSQL, parameters, a new cursor), report() prints as context: no code of mqueue's is in it."""
        self.ratio(db, 'mqueue enqueue+COMMIT', ENQUEUE_RAW, 0.9, 'enqueue / its statement sent raw on a new cursor')

    def check_sqlite(self):
        huey = next((peer for peer in self.peers if peer.name == 'huey-sqlite'), None)
        for w in huey.processes if huey else (1,):
            self.ratio('sqlite', f'mqueue W={w}', f'huey-sqlite W={w}', 3.0)

    def check_peers(self, db):
        """Every peer of db behind mqueue at each process count, where no target above asks more."""
        stricter = {'pgqueuer', 'huey-sqlite'}
        for peer in self.peers:
            if peer.database == db and peer.name not in stricter:
                for w in peer.processes:
                    self.ratio(db, f'mqueue W={w}', f'{peer.name} W={w}', 1.0)

    def ratio(self, db, a, b, goal, text=None, over=None):
        """Target: median a / median b (b on database `over`, default db) at least goal."""
        text = text or f'{a} / {b}'
        top, bottom = self.median(db, a), self.median(over or db, b)
        if top is None or bottom is None:
            self.add(db, text, None, f'>= {goal}', *(self.why_missing(db, a) if top is None else
                                                     self.why_missing(over or db, b)))
            return
        self.add(db, text, top / bottom, f'>= {goal}', 'met' if top / bottom >= goal else 'MISSED')

    def at_most(self, db, name, limit, text, goal=None, also=None):
        value = self.median(db, name)
        if value is None:
            self.add(db, text, None, goal or f'<= {limit}', *self.why_missing(db, name))
            return
        if also and self.median(db, also) is not None:
            text += f' ({self.median(db, also):.2f} {also})'
        self.add(db, text, value, goal or f'<= {limit}', 'met' if value <= limit else 'MISSED')

    def why_missing(self, db, name):
        """The status of a target one of whose figures is missing, and why: MISSED if a measure of
        mqueue's failed, else skipped (a peer could not run, or was not asked to)."""
        measure = (name if name in self.failed.get(db, {}) else 'one-row commits' if 'COMMIT' in name
                   else name.split(' ')[0])   # (latency p50 ms: latency's; the enqueues: one-row commits')
        if measure in self.failed.get(db, {}):
            return 'MISSED', f'failed: {self.failed[db][measure]}'
        if name in self.skipped.get(db, {}):
            return 'skipped', self.skipped[db][name]
        if db not in self.values:
            return 'skipped', f'{db} not in this run'
        if self.args.no_peers:
            return 'skipped', '--no-peers'
        peer = next((peer for peer in self.peers if name.startswith(peer.name + ' ')), None)
        if peer is None:
            return 'skipped', f'{name.rsplit(" ", 1)[0]} is not in bench/peers.py'
        return 'skipped', f'{peer.name} runs at W={", ".join(map(str, peer.processes))} only'

    def add(self, db, text, value, goal, status, why=''):
        self.targets.append({'database': db, 'target': text, 'value': None if value is None else round(value, 3),
                             'goal': goal, 'status': status, 'why': why})


def number(value):
    return f'{value:,.0f}' if abs(value) >= 100 else f'{value:.2f}'


if __name__ == '__main__':
    sys.exit(main())
