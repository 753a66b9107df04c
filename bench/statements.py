"""What a worker sends per task, on each database, and where its time goes.

    python bench/statements.py                      # MariaDB (PyMySQL), PostgreSQL (psycopg 3), SQLite
    python bench/statements.py --tasks 2000 --batch 1 --database postgresql
    python bench/statements.py --reading             # tasks that read current().connection

One worker, in this process, drains --tasks no-op tasks at --batch per transaction through a
connection that counts what it sends: each statement by kind (claim, lease, savepoint...), and each
commit and rollback (a round trip too). The connection's set-up statements are left out: they are
sent once per connection. It times each of those calls, so the report also says how much of the
drain was spent waiting on the database and how much in Python (mqueue's, and the driver's own
encoding and decoding, which the timer cannot tell apart from the wait). --profile adds
cProfile's top functions by own time. A no-op task never reads its connection, so it takes no
savepoint; with --reading each does (as a task that writes must), and takes one.

The statements are mqueue's named ones (the SQL section of mqueue.py); docs/design.md's "How a task
runs" gives the figures this prints.
"""

import argparse
import collections
import cProfile
import os
import pstats
import re
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import mqueue  # noqa: E402

DATABASES = {
    'mysql': os.environ.get('MQUEUE_BENCH_MYSQL', 'mysql+pymysql://root@127.0.0.1:3306/test'),
    'postgresql': os.environ.get('MQUEUE_BENCH_POSTGRESQL', 'postgresql+psycopg://postgres@127.0.0.1:5432/test'),
    'sqlite': os.environ.get('MQUEUE_BENCH_SQLITE', f'sqlite:///{tempfile.gettempdir()}/mqueue-bench-statements.db'),
}
# A statement's kind, by how it starts (the first pattern that matches).
KINDS = [
    ('savepoint', r'SAVEPOINT '), ('release savepoint', r'RELEASE SAVEPOINT '),
    ('rollback to savepoint', r'ROLLBACK TO SAVEPOINT '), ('begin', r'BEGIN'), ('lazy commit', r'SET LOCAL synchronous_commit|PRAGMA synchronous'),
    ('next priority', r'SELECT MIN\(priority\)'), ('probe', r'\(?SELECT 1 AS due'),
    ('due pairs', r'(SELECT \* FROM )?\(?SELECT (%s|\?) AS pair'),   # (a queue with over MAX_PRIORITIES in use)
    ('rescue look', r'SELECT id FROM \w+( FORCE INDEX \(claimed\))? WHERE claimed_at'),
    ('counts', r'(INSERT INTO|DELETE FROM) \w+_counts |SELECT COUNT\((\*\) FROM (information_schema.tables|sqlite_master '
               r"WHERE type = 'table')|to_regclass\(%s\)\))"),   # (the throughput's, every 5 s and as a worker stops)
    ('claimed index lookup', r'SELECT COUNT\((\*\) FROM (information_schema|sqlite_master)|to_regclass)'),
    ('rescue lock', r'SELECT id, name, queue, retries, eta, claimed_at, worker, '),
    ('rescue', r'UPDATE \w+ SET eta = .*, claimed_at = NULL, worker = NULL WHERE id IN'),
    ('claim', r'\(?SELECT id, name, args'), ('lease', r'UPDATE \w+ SET retries = retries \+ 1'),
    ('lock', r'SELECT id, retries, '), ('complete', r'DELETE FROM'),
    ('retry', r'UPDATE \w+ SET eta = '), ('release', r'UPDATE \w+ SET retries = retries - 1'),
]


class Counts:
    """What the counting connections sent, and the seconds spent in those calls."""

    def __init__(self):
        self.sent = collections.Counter()
        self.seconds = 0.0
        self.counting = False

    def call(self, kind, function, *args):
        began = time.perf_counter()
        try:
            return function(*args)
        finally:
            if self.counting:
                self.sent[kind] += 1
                self.seconds += time.perf_counter() - began


class CountingCursor:
    def __init__(self, cursor, counts):
        object.__setattr__(self, '_cursor', cursor)
        object.__setattr__(self, '_counts', counts)

    def execute(self, sql, params=None):
        kind = next((kind for kind, pattern in KINDS if re.match(pattern, sql)), 'other')
        if params is None:
            return self._counts.call(kind, self._cursor.execute, sql)
        return self._counts.call(kind, self._cursor.execute, sql, params)

    def __getattr__(self, name):
        return getattr(self._cursor, name)


class CountingConnection:
    """A DB-API connection that counts; anything else goes to the driver's connection."""

    def __init__(self, conn, counts):
        object.__setattr__(self, '_conn', conn)
        object.__setattr__(self, '_counts', counts)

    def cursor(self):
        return CountingCursor(self._conn.cursor(), self._counts)

    def commit(self):
        return self._counts.call('commit', self._conn.commit)

    def rollback(self):
        return self._counts.call('rollback', self._conn.rollback)

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def __setattr__(self, name, value):   # autocommit, isolation_level: the driver's
        setattr(self._conn, name, value)


def noop():
    pass


def reading_connection():
    mqueue.current().connection


def drain(database, url, n, batch, profile, reading=False):
    """Fill a fresh table with n due tasks (that read their connection, if reading), drain it
    with one counting worker; the report."""
    table = f'bench_statements_{uuid.uuid4().hex[:8]}'
    registry = mqueue.Registry(table=table, cron_table=table + '_cron', dialect=database)
    registry.task(name='noop')(reading_connection if reading else noop)
    connect = mqueue.connect_url(url)
    conn = connect()
    registry.create_tables(conn)
    for start in range(0, n, 5000):
        registry.enqueue_many(conn, 'noop', [[] for _ in range(min(5000, n - start))])
    conn.commit()
    counts = Counts()
    worker = mqueue.Worker(lambda: CountingConnection(connect(), counts), ['default'], registry=registry,
                           batch=batch, crons=False)
    worker._open()             # connected and set up before the count starts
    counts.counting = True
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler:
        profiler.enable()
    done = worker.run(burst=True)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - began
    cursor = conn.cursor()
    cursor.execute(f'SELECT COUNT(*) FROM {table}')
    left = cursor.fetchone()[0]
    cursor.execute(f'DROP TABLE {table}')
    cursor.execute(f'DROP TABLE {table}_cron')
    cursor.execute(f'DROP TABLE {registry.result_table}')
    cursor.execute(f'DROP TABLE IF EXISTS {registry.counts_table}')
    conn.commit()
    conn.close()
    if done != n or left:
        raise RuntimeError(f'{database}: {done} of {n} tasks ran, {left} rows left')
    return counts, elapsed, profiler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tasks', type=int, default=2000)
    parser.add_argument('--batch', type=int, default=mqueue.DEFAULT_BATCH)
    parser.add_argument('--database', choices=list(DATABASES), action='append',
                        help='one database (repeatable; default all three)')
    parser.add_argument('--profile', action='store_true', help="print cProfile's top functions by own time")
    parser.add_argument('--reading', action='store_true', help='tasks that read current().connection')
    args = parser.parse_args(argv)
    print(f'mqueue {mqueue.__version__}: one worker, {args.tasks:,} no-op tasks'
          f'{" reading their connection" if args.reading else ""}, batch {args.batch}')
    for database in args.database or DATABASES:
        counts, elapsed, profiler = drain(database, DATABASES[database], args.tasks, args.batch, args.profile,
                                          args.reading)
        statements = sum(count for kind, count in counts.sent.items() if kind not in ('commit', 'rollback'))
        trips = sum(counts.sent.values())
        print(f'\n{database} ({DATABASES[database].split("://")[0]}): {args.tasks / elapsed:,.0f} tasks/s; '
              f'per task {statements / args.tasks:.2f} statements, {trips / args.tasks:.2f} round trips '
              f'with commits; {counts.seconds / elapsed:.0%} of the time in those calls')
        for kind, count in counts.sent.most_common():
            print(f'  {kind:24}{count:>8,}{count / args.tasks:>8.2f} per task')
        if profiler:
            pstats.Stats(profiler, stream=sys.stdout).sort_stats('tottime').print_stats(15)
    return 0


if __name__ == '__main__':
    sys.exit(main())
