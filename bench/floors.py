"""mqueue against what each database can do: raw floors and mqueue's drains, side by side per database.

    python bench/floors.py                          # MariaDB (PyMySQL), PostgreSQL (psycopg 3), SQLite
    python bench/floors.py --quick --database postgresql

The floors are hand-written SQL on one connection each, with nothing but the database's own work:
claim rows with the claim's locking read and delete them, one row or ten per transaction; INSERT +
COMMIT one row at a time; executemany 100 rows per commit. mqueue drains the same number of no-op
tasks with 1, 2 and 4 worker processes (batch 20), and enqueues one task per commit and 1,000 per
enqueue_many. Rounds are interleaved (every measure once per round); each line gives the median
and the min-max. Every drain checks that every task ran exactly once: the worker processes count
their calls, and the table must be empty after.

This is the per-database half of issue 14's bench (its peers, pgqueuer and the others, are still
to come); bench/bench.py is MariaDB's, with its peers.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import mqueue  # noqa: E402

DATABASES = {
    'mysql': os.environ.get('MQUEUE_BENCH_MYSQL', 'mysql+pymysql://root@127.0.0.1:3306/test'),
    'postgresql': os.environ.get('MQUEUE_BENCH_POSTGRESQL', 'postgresql+psycopg://postgres@127.0.0.1:5432/test'),
    'sqlite': os.environ.get('MQUEUE_BENCH_SQLITE', f'sqlite:///{tempfile.gettempdir()}/mqueue-bench-floors.db'),
}
# The floor's claim: the due rows in claim order, locked, skipping those another connection holds.
FLOOR_CLAIM = ('SELECT id FROM {task}{claim_index} WHERE queue = %s AND dead_at IS NULL AND priority = 0 '
               'AND eta <= {now} ORDER BY eta, id LIMIT %s{skip_locked}')
FLOOR_DELETE = 'DELETE FROM {task} WHERE id IN ({ids})'
FLOOR_INSERT = "INSERT INTO {task} (args, eta, name, queue, retries, priority) VALUES ('[]', {now}, 'noop', 'default', 0, 0)"
FLOOR_INSERT_ROW = "INSERT INTO {task} (args, eta, name, queue, retries, priority) VALUES (%s, {now}, %s, %s, 0, 0)"


class Database:
    """One database under test: its URL, dialect, and a table of its own."""

    def __init__(self, name, url):
        self.name, self.url, self.connect = name, url, mqueue.connect_url(url)
        self.table = f'bench_floors_{uuid.uuid4().hex[:8]}'
        self.registry = mqueue.Registry(table=self.table, cron_table=self.table + '_cron', dialect=name)
        self.registry.task(name='noop')(count_call)
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

    def reset(self):
        conn = self.connect()
        cursor = conn.cursor()
        cursor.execute(f'DROP TABLE IF EXISTS {self.table}')
        cursor.execute(f'DROP TABLE IF EXISTS {self.table}_cron')
        conn.commit()
        self.registry.create_tables(conn)
        conn.commit()
        conn.close()

    def fill(self, n):
        conn = self.connect()
        for start in range(0, n, 5000):
            self.registry.enqueue_many(conn, 'noop', [[] for _ in range(min(5000, n - start))])
        conn.commit()
        conn.close()

    def left(self):
        return self.execute(f'SELECT COUNT(*) FROM {self.table}')[0][0]


_calls = [0]


def count_call():
    _calls[0] += 1


# Drains, each in worker processes started together ###############################################

def in_processes(database, target, workers, *args):
    """Run target(database, *args) in `workers` processes; the wall time and the calls they made."""
    ready = multiprocessing.Barrier(workers + 1)
    calls = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_gated, args=(ready, calls, database, target, args))
             for _ in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait()
    began = time.perf_counter()
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f'{target.__name__} failed in a worker process')
    elapsed = time.perf_counter() - began
    return elapsed, sum(calls.get(timeout=10) for _ in procs)


def _gated(ready, calls, database, target, args):
    prepared = target(database, *args, prepare=True)
    ready.wait()
    calls.put(target(database, *args, prepared=prepared))


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


def mqueue_drain(database, batch, prepare=False, prepared=None):
    if prepare:
        worker = mqueue.Worker(database.connect, ['default'], registry=database.registry, batch=batch, crons=False)
        worker._open()   # connected before the clock starts
        return worker
    _calls[0] = 0
    prepared.run(burst=True)
    return _calls[0]


def drain_rate(database, n, target, workers, *args):
    database.reset()
    database.fill(n)
    elapsed, ran = in_processes(database, target, workers, *args)
    left = database.left()
    if ran != n or left:
        raise RuntimeError(f'{database.name}: {ran} of {n} tasks ran, {left} rows left: not exactly once')
    return n / elapsed


# Enqueue rates, one connection ####################################################################

def commit_rate(database, rows, per_commit, write):
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


def insert_commit(database, n):
    statement = database.sql(FLOOR_INSERT)
    return commit_rate(database, n, 1, lambda conn, cursor: cursor.execute(statement))


def executemany_rows(database, n, rows=100):
    statement = database.sql(FLOOR_INSERT_ROW)
    return commit_rate(database, n, rows, lambda conn, cursor: cursor.executemany(
        statement, [('[]', 'noop', 'default')] * rows))


def mqueue_enqueue(database, n):
    return commit_rate(database, n, 1, lambda conn, cursor: database.registry.enqueue(conn, 'noop', []))


def mqueue_enqueue_many(database, n, rows=1000):
    return commit_rate(database, n, rows, lambda conn, cursor: database.registry.enqueue_many(
        conn, 'noop', [[] for _ in range(rows)]))


# The run #########################################################################################

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--tasks', type=int, default=20_000, help='tasks per drain (default 20000)')
    parser.add_argument('--quick', action='store_true', help='one round of 5,000 tasks per drain')
    parser.add_argument('--database', choices=list(DATABASES), action='append',
                        help='one database (repeatable; default all three)')
    args = parser.parse_args(argv)
    rounds, n = (1, 5000) if args.quick else (args.rounds, args.tasks)
    databases = [Database(name, DATABASES[name]) for name in args.database or DATABASES]
    plan = []
    for db in databases:
        plan += [
            (db, 'floor 1 row/txn', lambda db=db: drain_rate(db, n, floor_drain, 1, 1)),
            (db, 'floor 10 rows/txn', lambda db=db: drain_rate(db, n, floor_drain, 1, 10)),
            (db, 'floor INSERT+COMMIT', lambda db=db: insert_commit(db, min(n, 2000))),
            (db, 'floor executemany 100', lambda db=db: executemany_rows(db, n)),
            (db, 'mqueue enqueue+COMMIT', lambda db=db: mqueue_enqueue(db, min(n, 2000))),
            (db, 'mqueue enqueue_many 1000', lambda db=db: mqueue_enqueue_many(db, n)),
        ] + [(db, f'mqueue W={w}', lambda db=db, w=w: drain_rate(db, n, mqueue_drain, w, mqueue.DEFAULT_BATCH))
             for w in (1, 2, 4)]
    results = {}
    for round_ in range(rounds):
        print(f'round {round_ + 1} of {rounds}', flush=True)
        for db, name, measure in plan:
            value = measure()
            results.setdefault((db.name, name), []).append(value)
            print(f'  {db.name} {name}: {value:,.0f}/s', flush=True)
    for db in databases:
        db.execute(f'DROP TABLE IF EXISTS {db.table}')
        db.execute(f'DROP TABLE IF EXISTS {db.table}_cron')

    med = {key: statistics.median(values) for key, values in results.items()}
    print(f'\nmqueue {mqueue.__version__}: {rounds} round(s), {n:,} no-op tasks per drain, batch {mqueue.DEFAULT_BATCH}, '
          f'{os.cpu_count()} cores; per second, median (min-max)')
    for db in databases:
        print(f'\n{db.name} ({db.url.split("://")[0]})')
        for (name_db, name), values in results.items():
            if name_db == db.name:
                print(f'  {name:28}{med[name_db, name]:>10,.0f}  ({min(values):,.0f}-{max(values):,.0f})')
        ratio = lambda a, b: med[db.name, a] / med[db.name, b]   # noqa: E731
        print(f'  mqueue W=1 / floor 10 rows/txn: {ratio("mqueue W=1", "floor 10 rows/txn"):.2f}; '
              f'W=4 / floor 10 rows/txn: {ratio("mqueue W=4", "floor 10 rows/txn"):.2f}; '
              f'enqueue / INSERT+COMMIT: {ratio("mqueue enqueue+COMMIT", "floor INSERT+COMMIT"):.2f}; '
              f'enqueue_many / executemany: {ratio("mqueue enqueue_many 1000", "floor executemany 100"):.2f}')
    return 0


if __name__ == '__main__':
    multiprocessing.set_start_method('fork')
    sys.exit(main())
