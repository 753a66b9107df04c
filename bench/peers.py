"""Drain rates of other Python task queues, for comparison with mqueue.

Each peer runs a no-op task in its normal worker configuration (PEERS[peer].settings says which;
its logging below ERROR silenced). ``drain_rate(peer, n, processes)`` enqueues n tasks (not timed),
then runs the peer's worker and times it from the moment the first task starts to the moment the
n-th task starts: that span holds exactly n - 1 full cycles (finish a task, fetch the next, start
it), so worker start-up and shut-down are left out; the rate returned is (n - 1) / span, in tasks
per second. Most peers run ONE worker in this process; pgqueuer runs 1, 2 or 4 worker processes
on the same queue (each a QueueManager), and then the span runs from the first start in any of
them to the n-th start over all of them. django-tasks-db's worker runs in a child process of its
own (Django's settings are configured once per process), and oban's in a Python 3.12 process.

Every drain checks that every task ran exactly once: task i gets the argument i (0 .. n-1) and
notes it when it starts; a task that never ran, or ran twice, raises RuntimeError naming the peer.
(A peer whose worker waits for more work cannot tell a lost task from a slow one: if fewer than n
tasks ran by the deadline, that is a Skip whose reason says how many did.)
``enqueue_many_rate(peer, n)`` times pgqueuer's batch enqueue (1,000 jobs a call, one connection),
to set beside mqueue's enqueue_many.

Every peer cleans up after itself: its own Redis database number, its own MariaDB database, its
own PostgreSQL database, a temporary SQLite file, its child processes (stopped and reaped). A peer
whose package or server is missing, or that does not finish within TIMEOUT seconds, raises Skip
with a one-line reason.

    python bench/peers.py [N] [PEER ...] [--processes P] [--enqueue-many]
        # prints "peer rate" lines (tasks/s); N defaults to 2000; P to 1

Where the servers are: REDIS_HOST/REDIS_PORT, MQUEUE_TEST_HOST/MQUEUE_TEST_PORT (MariaDB, root
with an empty password) and PG_CONNINFO (a libpq connection string for a database from which the
peer may create and drop its own) in the environment, with this machine's defaults.

oban (oban-py) needs Python 3.12, so it is not in the [bench] extra: MQUEUE_BENCH_PY312 names a
3.12 interpreter that has it (default: pyenv's 3.12.1), e.g. one made by
``python3.12 -m venv /work/venv312 && /work/venv312/bin/pip install oban 'psycopg[binary]'``;
bench/peer_oban.py is the half that runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

__all__ = ['PEERS', 'Peer', 'Skip', 'drain_rate', 'enqueue_many_rate']

TIMEOUT = 120.0      # seconds a peer may take to drain its n tasks
SETUP_TIMEOUT = 30.0  # seconds a peer's worker may take to start, or to stop

REDIS_HOST = os.environ.get('REDIS_HOST', '127.0.0.1')
REDIS_PORT = int(os.environ.get('REDIS_PORT', 6379))
RQ_REDIS_DB = 15      # flushed before and after the rq run
HUEY_REDIS_DB = 14    # flushed before and after the huey-redis run

MYSQL_HOST = os.environ.get('MQUEUE_TEST_HOST', '127.0.0.1')
MYSQL_PORT = int(os.environ.get('MQUEUE_TEST_PORT', 3306))
CELERY_DATABASE = 'bench_celery'        # created and dropped: kombu's tables live there

# Each PostgreSQL peer creates its own database and drops it afterwards (WITH (FORCE), so that
# the connections of a worker process that had to be killed do not keep it).
PG_CONNINFO = os.environ.get('PG_CONNINFO', 'host=127.0.0.1 port=5432 user=postgres dbname=test')
PROCRASTINATE_DATABASE = 'bench_procrastinate'
PGQUEUER_DATABASE = 'bench_pgqueuer'
CHANCY_DATABASE = 'bench_chancy'
DJANGO_DATABASE = 'bench_django_tasks'
OBAN_DATABASE = 'bench_oban'

PY312 = os.environ.get('MQUEUE_BENCH_PY312', '/root/.pyenv/versions/3.12.1/bin/python')
OBAN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'peer_oban.py')

# The peers' own settings, where they have a choice to make.
PGQUEUER_BATCH_SIZE = 10       # QueueManager.run's default: jobs taken per dequeue
PGQUEUER_ENTRYPOINT = 'bench_noop'
CHANCY_CONCURRENCY = 10        # jobs a chancy worker runs at once from the queue
CHANCY_QUEUE = 'bench'
DJANGO_INTERVAL = 1.0          # db_worker's default: seconds it sleeps when it finds no task
OBAN_LIMIT = 10                # the queue's limit: jobs an Oban node runs at once
ENQUEUE_BATCH = 1000           # jobs per batch-enqueue call, as mqueue's enqueue_many is measured

PEER_LOGGERS = ('rq', 'celery', 'kombu', 'amqp', 'procrastinate', 'huey', 'sqlalchemy', 'psycopg', 'asyncio',
                'pgqueuer', 'asyncpg', 'chancy', 'django', 'django_tasks', 'django_tasks_db')


@dataclasses.dataclass(frozen=True)
class Peer:
    """What bench.py needs to know about a peer besides its figure."""

    database: str              # where its queue lives: 'postgresql', 'sqlite', 'mysql' or 'redis'
    processes: tuple           # the worker-process counts drain_rate accepts for it
    settings: str              # one line, printed with its figure
    requirement: str           # what to pip install (the same packages as the [bench] extra)


PEERS = {
    'rq': Peer('redis', (1,), 'SimpleWorker (no fork per job), burst mode', 'rq redis'),
    'celery-sqlalchemy': Peer(
        'mysql', (1,), 'solo pool, concurrency 1, kombu SQLAlchemy transport on pymysql, no result backend',
        'celery kombu sqlalchemy pymysql'),
    'procrastinate': Peer(
        'postgresql', (1,), 'psycopg 3 connector, run_worker_async concurrency 1, wait=False',
        "procrastinate 'psycopg[binary]'"),
    'huey-sqlite': Peer('sqlite', (1,), "SqliteHuey, huey's worker loop (dequeue, execute) in-process", 'huey'),
    'huey-redis': Peer('redis', (1,), "RedisHuey, huey's worker loop (dequeue, execute) in-process", 'huey redis'),
    'pgqueuer': Peer(
        'postgresql', (1, 2, 4),
        f'asyncpg, QueueManager batch_size {PGQUEUER_BATCH_SIZE}, no concurrency limit (its defaults), '
        'async no-op entrypoint, one QueueManager per process',
        "pgqueuer asyncpg 'psycopg[binary]'"),
    'chancy': Peer(
        'postgresql', (1,),
        f'psycopg 3 pool, queue concurrency {CHANCY_CONCURRENCY}, AsyncExecutor, eager_polling, '
        'default plugins, one Worker',
        "chancy 'psycopg[binary]'"),
    'django-tasks-db-postgresql': Peer(
        'postgresql', (1,),
        f"db_worker's Worker (one task at a time, interval {DJANGO_INTERVAL:g} s), psycopg 3, "
        'persistent connection (CONN_MAX_AGE None)',
        "'django-tasks-db[compat]' 'psycopg[binary]'"),
    'django-tasks-db-sqlite': Peer(
        'sqlite', (1,),
        f"db_worker's Worker (one task at a time, interval {DJANGO_INTERVAL:g} s), Django's SQLite "
        'defaults (rollback journal), persistent connection',
        "'django-tasks-db[compat]'"),
    'oban': Peer(
        'postgresql', (1,),
        f'oban-py on Python 3.12 (MQUEUE_BENCH_PY312), psycopg 3 pool, queue limit {OBAN_LIMIT}, sync no-op job',
        "oban 'psycopg[binary]' (in a Python 3.12 venv)"),
}


class Skip(Exception):
    """Raised with a one-line reason when a peer cannot run here."""


# The clock every peer's no-op task ticks ##########################################################

class _Clock:
    """Notes, for each argument 0 .. n-1, how many times the task that got it ran and when it last
    started, and counts the tasks run.

    Every peer here can pass its task an argument, so each drain is checked exactly-once from
    these notes (check()). For peers whose workers run in child processes, reset(n, context=...)
    puts the notes in shared memory, and each child attach()es to them; perf_counter is the
    system's monotonic clock on Linux, the same in every process, so their starts compare.
    """

    def __init__(self):
        self.reset(0)

    def reset(self, n: int, on_timeout=None, context=None):
        self.n = n
        if context is None:
            self.lock = threading.Lock()
            self.hits, self.starts, self.counts = [0] * n, [0.0] * n, [0, 0]
        else:
            self.lock = context.Lock()
            self.hits, self.starts, self.counts = (context.RawArray('i', n), context.RawArray('d', n),
                                                   context.RawArray('q', 2))
        # counts: [tasks run, tasks whose argument was not one of 0 .. n-1]
        self.deadline = time.perf_counter() + TIMEOUT   # moved to the worker's start by start()
        self.on_timeout = on_timeout                    # called once, from a task, past the deadline
        self.timed_out = False
        self.done = threading.Event()

    def shared(self) -> tuple:
        """What a child process needs to attach() to the notes (reset with a context first)."""
        return self.n, self.lock, self.hits, self.starts, self.counts

    def attach(self, shared: tuple):
        self.reset(0)
        self.n, self.lock, self.hits, self.starts, self.counts = shared

    def start(self):
        """The worker is about to start: the deadline counts from now."""
        self.deadline = time.perf_counter() + TIMEOUT

    def tick(self, arg, now: float | None = None):
        now = time.perf_counter() if now is None else now
        with self.lock:
            self.counts[0] += 1
            count = self.counts[0]
            if type(arg) is int and 0 <= arg < self.n:
                self.hits[arg] += 1
                self.starts[arg] = now
            else:
                self.counts[1] += 1
        if count >= self.n:
            self.done.set()
        elif now > self.deadline and not self.timed_out:
            self.timed_out = True
            if self.on_timeout is not None:
                self.on_timeout()

    @property
    def count(self) -> int:
        return self.counts[0]

    def finished(self) -> bool:
        return self.counts[0] >= self.n

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    def expired(self) -> bool:
        return time.perf_counter() > self.deadline

    def check(self, peer: str):
        """RuntimeError unless every task 0 .. n-1 ran exactly once."""
        hits = list(self.hits)
        missing = [arg for arg, times in enumerate(hits) if times == 0]
        repeated = [arg for arg, times in enumerate(hits) if times > 1]
        strays = self.counts[1]
        if missing or repeated or strays:
            raise RuntimeError(f'{peer} did not run each of its {self.n} tasks exactly once: '
                               f'{len(missing)} never ran {missing[:5]}, {len(repeated)} ran more than once '
                               f'{repeated[:5]}, {strays} got an argument outside 0..{self.n - 1}')

    def rate(self, peer: str) -> float:
        if self.count < self.n and self.expired():
            raise Skip(f'{peer}: only {self.count} of {self.n} tasks ran within {TIMEOUT:.0f} s')
        self.check(peer)   # also when the worker stopped by itself before n tasks: some never ran
        starts = list(self.starts)
        return (self.n - 1) / (max(starts) - min(starts))


_CLOCK = _Clock()


def _noop(i: int):
    """The task most peers run (peers that import tasks by dotted name import this one)."""
    _CLOCK.tick(i)


# Helpers ##########################################################################################

def _need(peer: str):
    """An ImportError below becomes Skip('pip install ...')."""
    @contextlib.contextmanager
    def guard():
        try:
            yield
        except ImportError as exc:
            raise Skip(f'pip install {PEERS[peer].requirement} ({exc})') from None
    return guard()


@contextlib.contextmanager
def _quiet():
    """Peers' loggers at ERROR for the run; their previous levels are put back afterwards."""
    loggers = [logging.getLogger(name) for name in PEER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _batches(n: int, size: int = ENQUEUE_BATCH):
    """range(0, n) in consecutive ranges of at most size."""
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _server_errors() -> tuple:
    """The connection-level errors of whichever clients are installed."""
    errors = []
    for module, names in (('redis.exceptions', ('ConnectionError', 'TimeoutError')),
                          ('pymysql.err', ('OperationalError', 'InterfaceError')),
                          ('psycopg', ('OperationalError',)),
                          ('asyncpg', ('PostgresConnectionError', 'InterfaceError')),
                          ('sqlalchemy.exc', ('OperationalError',)),
                          ('kombu.exceptions', ('OperationalError',))):
        try:
            loaded = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        errors.extend(getattr(loaded, name) for name in names)
    return tuple(errors)


def _cleanup(what: str, action):
    """Run a clean-up step; a failure is reported on stderr, not raised over the run's own result."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001
        print(f'bench/peers.py: could not {what}: {exc}', file=sys.stderr)


def _redis(db: int):
    import redis
    conn = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_connect_timeout=5)
    try:
        conn.ping()
    except redis.exceptions.RedisError as exc:
        raise Skip(f'Redis unavailable at {REDIS_HOST}:{REDIS_PORT}: {exc}') from None
    return conn


@contextlib.contextmanager
def _pg_database(name: str):
    """A new, empty PostgreSQL database for one run, dropped afterwards; yields its conninfo."""
    import psycopg
    try:
        admin = psycopg.connect(PG_CONNINFO, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        raise Skip(f'PostgreSQL unavailable ({PG_CONNINFO}): {exc}'.replace('\n', ' ')) from None
    try:
        admin.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
        admin.execute(f'CREATE DATABASE {name}')
        yield psycopg.conninfo.make_conninfo(PG_CONNINFO, dbname=name)
    finally:
        def drop():   # on a connection of its own: the server may have restarted meanwhile
            with psycopg.connect(PG_CONNINFO, autocommit=True, connect_timeout=5) as again:
                again.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
        _cleanup(f'drop database {name}', drop)
        _cleanup('close the admin connection', admin.close)


# Workers in child processes #######################################################################
# For pgqueuer's several worker processes, and for django-tasks-db, whose settings can be configured
# only once per process. The children are spawned (a fresh interpreter: nothing of the caller's
# connections or threads is inherited), set up, report 'ready', and start their worker together
# when the parent says go; the deadline counts from then.

def _in_processes(peer: str, n: int, processes: int, target, *args):
    """Run target(started, stop, *args) in `processes` child processes ticking the shared clock,
    until n tasks ran, all children exited, or the deadline passed; then stop and reap them all.
    target sets its worker up, calls started() (False: give up, the parent is stopping), runs its
    worker until _finished(stop), and stops it. Raises Skip if a child fails or is not ready in time."""
    context = multiprocessing.get_context('spawn')
    _CLOCK.reset(n, context=context)
    reports, go, stop = context.Queue(), context.Event(), context.Event()
    children = [context.Process(target=_child, name=f'bench-peers-{peer}-{index}', daemon=True,
                                args=(index, _CLOCK.shared(), reports, go, stop, target) + args)
                for index in range(processes)]
    try:
        for child in children:
            child.start()
        ready, give_up = set(), time.perf_counter() + TIMEOUT + SETUP_TIMEOUT   # set-up may enqueue n
        while len(ready) < processes:
            report = _next_report(peer, reports, 0.1)
            if report is not None:
                ready.add(report)
            elif any(child.exitcode is not None for child in children):
                raise Skip(f'{peer}: a worker process exited before it was ready '
                           f'(exit codes {[child.exitcode for child in children]})')
            elif time.perf_counter() > give_up:
                raise Skip(f'{peer}: its worker processes were not ready within {TIMEOUT + SETUP_TIMEOUT:.0f} s')
        _CLOCK.start()
        go.set()
        while not _CLOCK.finished() and not _CLOCK.expired():
            _next_report(peer, reports, 0.05)
            if all(child.exitcode is not None for child in children):
                break                     # stopped by themselves: rate() says what is missing
    finally:
        stop.set()
        give_up = time.perf_counter() + SETUP_TIMEOUT
        for child in children:
            if child.pid is not None:
                child.join(max(0.0, give_up - time.perf_counter()))
        stuck = [child for child in children if child.pid is not None and child.exitcode is None]
        for child in stuck:
            child.terminate()
        for child in stuck:
            child.join(5)
            if child.exitcode is None:
                child.kill()
                child.join()
        if stuck:
            print(f'bench/peers.py: {peer}: {len(stuck)} worker process(es) did not stop within '
                  f'{SETUP_TIMEOUT:.0f} s and were terminated', file=sys.stderr)
        failures = []                     # reported while stopping (raised below, not over an error)
        with contextlib.suppress(queue.Empty, OSError, ValueError):
            while True:
                kind, index, text = reports.get(timeout=0.1)
                if kind == 'failed':
                    failures.append(f'worker process {index} failed: {text}')
        reports.close()
        reports.cancel_join_thread()
    if failures:
        raise Skip(f'{peer}: {failures[0]}')
    crashed = [child.exitcode for child in children if child.exitcode and child not in stuck]
    if crashed and not _CLOCK.finished():
        raise Skip(f'{peer}: worker process(es) exited with code(s) {crashed} after {_CLOCK.count} of {n} tasks')


def _next_report(peer: str, reports, wait: float):
    """The index of the next child that reported ready, None if none did within wait seconds;
    Skip if a child reported a failure."""
    try:
        kind, index, text = reports.get(timeout=wait) if wait else reports.get_nowait()
    except (queue.Empty, OSError, ValueError):   # OSError, ValueError: the queue is closed
        return None
    if kind == 'failed':
        raise Skip(f'{peer}: worker process {index} failed: {text}')
    return index


def _child(index: int, shared: tuple, reports, go, stop, target, *args):
    """A child process of _in_processes."""
    _CLOCK.attach(shared)

    def started() -> bool:
        reports.put(('ready', index, ''))
        while not go.wait(0.1):
            if stop.is_set():
                return False
        return not stop.is_set()

    with _quiet():
        try:
            target(started, stop, *args)
        except BaseException as exc:  # noqa: B902 - reported to the parent, which raises Skip
            reports.put(('failed', index, f'{type(exc).__name__}: {exc}'.replace('\n', ' ')[:300]))
            raise SystemExit(1) from None


def _finished(stop) -> bool:
    """In a child: n tasks ran over all processes, or the parent says stop."""
    return _CLOCK.finished() or stop.is_set()


# rq ###############################################################################################

def _rq(n: int) -> float:
    with _need('rq'):
        import redis  # noqa: F401
        from rq import Queue, SimpleWorker
    conn = _redis(RQ_REDIS_DB)
    conn.flushdb()
    try:
        queue = Queue('bench', connection=conn)
        for batch in _batches(n):
            with conn.pipeline() as pipe:
                queue.enqueue_many([Queue.prepare_data(_noop, args=(i,)) for i in batch], pipeline=pipe)
                pipe.execute()
        _CLOCK.reset(n, on_timeout=queue.empty)   # past the deadline: drop the rest, so burst ends
        worker = SimpleWorker([queue], connection=conn)
        _CLOCK.start()
        worker.work(burst=True, logging_level='ERROR')
        return _CLOCK.rate('rq')
    finally:
        _cleanup(f'flush Redis db {RQ_REDIS_DB}', conn.flushdb)
        conn.close()


# Celery on kombu's SQLAlchemy transport (MariaDB) #################################################
# kombu's transport keeps every message (a fetch marks it invisible and updates its timestamp), and
# fetches with SELECT ... FOR UPDATE ORDER BY timestamp, id LIMIT 1. Seen here with n = 20,000: about
# 400 tasks/s until some 16,000 had run, then MariaDB's plan for that query locked the whole table
# (some 40,000 rows) on every fetch, about 40 tasks/s for a minute; the average fell to 180-270.

def _celery(n: int) -> float:
    with _need('celery-sqlalchemy'):
        import pymysql
        import sqlalchemy  # noqa: F401
        from celery import Celery
        from celery.worker import state as worker_state
        from kombu.transport.sqlalchemy import Channel
    try:
        admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user='root', password='',
                                autocommit=True, connect_timeout=5)
    except pymysql.MySQLError as exc:
        raise Skip(f'MariaDB unavailable at {MYSQL_HOST}:{MYSQL_PORT}: {exc}') from None
    url = f'mysql+pymysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{CELERY_DATABASE}'
    app = None
    try:
        with admin.cursor() as cur:
            cur.execute('SET SESSION lock_wait_timeout = 30')
            cur.execute(f'DROP DATABASE IF EXISTS {CELERY_DATABASE}')
            cur.execute(f'CREATE DATABASE {CELERY_DATABASE}')
        app = Celery('bench_peers', broker=f'sqla+{url}', set_as_current=False)
        app.conf.update(task_ignore_result=True, result_backend=None, worker_hijack_root_logger=False,
                        broker_connection_retry_on_startup=True, worker_redirect_stdouts=False)

        @app.task(name='bench_peers.noop', shared=False)
        def noop(i):
            _CLOCK.tick(i)

        with app.producer_or_acquire() as producer:
            for i in range(n):
                noop.apply_async(args=(i,), producer=producer)

        # The embedded worker of celery.contrib.testing.worker, without its logging set-up and
        # with bounded waits: a WorkController (no signal handlers, no banner) in a thread.
        app.finalize()
        _CLOCK.reset(n)
        worker = app.WorkController(pool='solo', concurrency=1, loglevel='ERROR',
                                    hostname=f'bench_peers@{socket.gethostname()}', ready_callback=None,
                                    without_heartbeat=True, without_mingle=True, without_gossip=True)
        failure = []

        def run():
            try:
                app.set_current()   # thread-local: the solo pool's tracer looks the task up there
                worker.start()
            except BaseException as exc:  # noqa: B902 - reported by the waiting thread
                failure.append(exc)
                _CLOCK.done.set()

        thread = threading.Thread(target=run, name='celery-worker', daemon=True)
        _CLOCK.start()
        thread.start()
        give_up = time.perf_counter() + TIMEOUT + SETUP_TIMEOUT
        try:
            while not _CLOCK.done.wait(0.2) and thread.is_alive() and time.perf_counter() < give_up:
                pass
            if not _CLOCK.done.is_set() and not thread.is_alive() and not failure:
                raise Skip(f'celery worker stopped by itself after {_CLOCK.count} of {n} tasks')
        finally:
            worker_state.should_terminate = 0      # how celery's own embedded worker is stopped
            thread.join(SETUP_TIMEOUT)
            worker_state.should_terminate = None
        if failure:
            raise Skip(f'celery worker failed: {failure[0]!r}'[:300])
        if thread.is_alive():
            raise Skip(f'celery worker did not stop within {SETUP_TIMEOUT:.0f} s')
        return _CLOCK.rate('celery-sqlalchemy')
    finally:
        if app is not None:
            def close():   # kombu pools connections per URL for the whole process: drop ours
                from kombu import pools
                from kombu.utils.collections import eqhash
                key = eqhash(app.connection_for_write())
                for group in (pools.producers, pools.connections):
                    pool = dict.pop(group, key, None)
                    if pool is not None:
                        pool.force_close_all()
                app.close()
            _cleanup('close the celery app and its connection pools', close)

        def dispose():   # kombu caches one engine per URL for the whole process
            for key in [key for key in Channel._engines if CELERY_DATABASE in str(key)]:
                engine, _ = Channel._engines.pop(key)
                engine.dispose()
        _cleanup('dispose of kombu\'s engine', dispose)

        def drop():   # on a connection of its own: the server may have restarted meanwhile
            again = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user='root', password='',
                                    autocommit=True, connect_timeout=5)
            with again, again.cursor() as cur:
                cur.execute('SET SESSION lock_wait_timeout = 30')
                cur.execute(f'DROP DATABASE IF EXISTS {CELERY_DATABASE}')
        _cleanup(f'drop database {CELERY_DATABASE}', drop)
        _cleanup('close the admin connection', admin.close)


# procrastinate on PostgreSQL ######################################################################

def _procrastinate(n: int) -> float:
    with _need('procrastinate'):
        import procrastinate
        import psycopg  # noqa: F401
    with _pg_database(PROCRASTINATE_DATABASE) as conninfo:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

        @app.task(name='bench_peers.noop')
        def noop(i):
            _CLOCK.tick(i)

        async def main():
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                for batch in _batches(n):
                    await noop.batch_defer_async(*({'i': i} for i in batch))
                # The statistics autovacuum gathers on a live system (its naptime is a minute): on
                # a table just filled from empty, the planner's picks for the worker's fetch
                # query otherwise depend on whether autovacuum happens to analyze mid-run
                # (seen here: 180 to 450 jobs/s for the same n).
                await app.connector.execute_query_async('ANALYZE procrastinate_jobs')
                _CLOCK.reset(n)
                _CLOCK.start()
                try:
                    await asyncio.wait_for(
                        app.run_worker_async(wait=False, concurrency=1, install_signal_handlers=False),
                        TIMEOUT + SETUP_TIMEOUT)
                except asyncio.TimeoutError:
                    pass                                  # rate() reports the shortfall

        asyncio.run(main())
        return _CLOCK.rate('procrastinate')


# huey: one worker loop (what huey's consumer Worker.loop does: dequeue, execute) ################

def _huey_drain(huey, n: int, name: str) -> float:
    _CLOCK.reset(n)
    _CLOCK.start()
    while _CLOCK.count < n and not _CLOCK.expired():
        task = huey.dequeue()
        if task is not None:
            huey.execute(task)
        elif not huey.storage.blocking:
            time.sleep(0.01)                               # as huey's worker does when idle
    return _CLOCK.rate(name)


def _huey_sqlite(n: int) -> float:
    with _need('huey-sqlite'):
        from huey import SqliteHuey
    folder = tempfile.mkdtemp(prefix='bench-huey-')
    try:
        huey = SqliteHuey('bench_peers', filename=os.path.join(folder, 'huey.db'))
        noop = huey.task(name='bench_peers.noop')(_noop)
        for i in range(n):
            noop(i)
        try:
            return _huey_drain(huey, n, 'huey-sqlite')
        finally:
            huey.storage.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _huey_redis(n: int) -> float:
    with _need('huey-redis'):
        from huey import RedisHuey
    conn = _redis(HUEY_REDIS_DB)
    conn.flushdb()
    try:
        huey = RedisHuey('bench_peers', host=REDIS_HOST, port=REDIS_PORT, db=HUEY_REDIS_DB)
        noop = huey.task(name='bench_peers.noop')(_noop)
        for i in range(n):
            noop(i)
        return _huey_drain(huey, n, 'huey-redis')
    finally:
        _cleanup(f'flush Redis db {HUEY_REDIS_DB}', conn.flushdb)
        conn.close()


# pgqueuer on PostgreSQL (asyncpg), in 1, 2 or 4 worker processes #################################
# The parent installs pgqueuer's schema and enqueues; each child runs one QueueManager on the same
# queue. A job's payload is its argument, as ASCII digits.

def _need_pgqueuer():
    """Skip, saying what to install, unless pgqueuer, asyncpg and psycopg import."""
    with _need('pgqueuer'):
        import asyncpg  # noqa: F401
        import pgqueuer  # noqa: F401
        import psycopg  # noqa: F401


def _pgqueuer(n: int, processes: int) -> float:
    _need_pgqueuer()
    with _pg_database(PGQUEUER_DATABASE) as conninfo:
        async def fill():
            connection, queries = await _pgqueuer_connect(conninfo)
            try:
                await queries.install()
                for batch in _batches(n):
                    await _pgqueuer_enqueue(queries, batch)
                await connection.execute('ANALYZE')       # as for procrastinate, above
            finally:
                await connection.close(timeout=5)

        asyncio.run(fill())
        _in_processes('pgqueuer', n, processes, _pgqueuer_worker, conninfo)
        return _CLOCK.rate('pgqueuer')


async def _pgqueuer_connect(conninfo: str):
    """An asyncpg connection to conninfo's database and pgqueuer's Queries on it."""
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries
    from psycopg.conninfo import conninfo_to_dict
    params = conninfo_to_dict(conninfo)   # asyncpg does not read libpq's key=value strings
    connection = await asyncpg.connect(host=params.get('host'), port=int(params.get('port', 5432)),
                                       user=params.get('user'), password=params.get('password'),
                                       database=params.get('dbname'), timeout=5)
    return connection, Queries(AsyncpgDriver(connection))


async def _pgqueuer_enqueue(queries, batch: range):
    """pgqueuer's batch enqueue: one INSERT of len(batch) jobs, their payloads their arguments."""
    await queries.enqueue([PGQUEUER_ENTRYPOINT] * len(batch), [str(i).encode() for i in batch],
                          [0] * len(batch))


def _pgqueuer_worker(started, stop, conninfo: str):
    """One child's QueueManager, until n jobs ran over all the children."""
    from pgqueuer import QueueManager

    async def main():
        connection, queries = await _pgqueuer_connect(conninfo)
        try:
            manager = QueueManager(queries)

            @manager.entrypoint(PGQUEUER_ENTRYPOINT)
            async def noop(job):
                _CLOCK.tick(int(job.payload))

            if not started():
                return
            run = asyncio.create_task(manager.run(batch_size=PGQUEUER_BATCH_SIZE))
            while not run.done() and not _finished(stop):
                await asyncio.sleep(0.01)
            manager.shutdown.set()                 # finishes the jobs it holds, then returns
            await asyncio.wait_for(run, SETUP_TIMEOUT)
        finally:
            await connection.close(timeout=5)

    asyncio.run(main())


def _pgqueuer_enqueue_rate(n: int) -> float:
    _need_pgqueuer()
    with _pg_database(PGQUEUER_DATABASE) as conninfo:
        async def main():
            connection, queries = await _pgqueuer_connect(conninfo)
            try:
                await queries.install()
                batches = list(_batches(n))
                started = time.perf_counter()
                for batch in batches:
                    await _pgqueuer_enqueue(queries, batch)
                elapsed = time.perf_counter() - started
                rows, payloads = await connection.fetchrow(
                    f'SELECT count(*), count(DISTINCT payload) FROM {queries.qbe.settings.queue_table}')
                if rows != n or payloads != n:
                    raise RuntimeError(f'pgqueuer enqueued {rows} jobs with {payloads} distinct payloads, not {n}')
                return n / elapsed
            finally:
                await connection.close(timeout=5)

        return asyncio.run(main())


# chancy on PostgreSQL (psycopg 3) #################################################################
# chancy's worker polls a queue for up to `concurrency` jobs, then sleeps for its polling interval
# unless woken; eager_polling wakes it when a job completes (without it, 5 s between polls).

async def _chancy_noop(i: int):
    """chancy's job: imported by its dotted name, run by the AsyncExecutor in the worker's loop."""
    _CLOCK.tick(i)


def _chancy(n: int) -> float:
    with _need('chancy'):
        from chancy import Chancy, Job, Queue, Worker
    with _pg_database(CHANCY_DATABASE) as conninfo:
        async def main():
            # Given a logger, Chancy leaves its level alone (its default one is set to INFO).
            async with Chancy(conninfo, log=logging.getLogger('chancy')) as chancy:
                await chancy.migrate()
                await chancy.declare(Queue(CHANCY_QUEUE, concurrency=CHANCY_CONCURRENCY,
                                           executor=Chancy.Executor.Async, eager_polling=True))
                for batch in _batches(n):
                    jobs = [Job.from_func(_chancy_noop, queue=CHANCY_QUEUE, kwargs={'i': i}) for i in batch]
                    async for _ in chancy.push_many(jobs):
                        pass
                async with chancy.pool.connection() as conn:
                    await conn.execute('ANALYZE')            # as for procrastinate, above
                _CLOCK.reset(n)
                worker = Worker(chancy, register_signal_handlers=False, shutdown_timeout=int(SETUP_TIMEOUT))
                _CLOCK.start()
                try:
                    try:
                        await asyncio.wait_for(worker.start(), SETUP_TIMEOUT)
                    except asyncio.TimeoutError:
                        raise Skip(f'chancy worker did not start within {SETUP_TIMEOUT:.0f} s') from None
                    while not _CLOCK.finished() and not _CLOCK.expired():
                        await asyncio.sleep(0.01)
                finally:
                    try:   # its own shutdown_timeout bounds the jobs it waits for; this, the rest
                        await asyncio.wait_for(worker.stop(), SETUP_TIMEOUT + 5)
                    except asyncio.TimeoutError:
                        raise Skip(f'chancy worker did not stop within {SETUP_TIMEOUT + 5:.0f} s') from None

        asyncio.run(main())
        return _CLOCK.rate('chancy')


# django-tasks-db: Django's Tasks on its database backend, PostgreSQL or SQLite ####################
# In a child process: Django's settings are configured once per process, and each run needs its
# own database. Django 6 (django.tasks) needs Python 3.12; before it, django-tasks-db's [compat]
# extra brings Django 5.2 and the django-tasks backport, which django_tasks_db then uses.

def _django_tasks_db(n: int, database: str) -> float:
    peer = f'django-tasks-db-{database}'
    with _need(peer):
        import django  # noqa: F401
        import django_tasks_db  # noqa: F401
        if database == 'postgresql':
            import psycopg  # noqa: F401
    # Django's default CONN_MAX_AGE, 0, closes the connection at the end of every task (db_worker
    # treats each as a request) and opens a new one for the next; a deployment that cares about
    # throughput keeps it open, as every other peer here does.
    if database == 'postgresql':
        from psycopg.conninfo import conninfo_to_dict
        with _pg_database(DJANGO_DATABASE) as conninfo:
            params = conninfo_to_dict(conninfo)
            settings = {'ENGINE': 'django.db.backends.postgresql', 'NAME': params['dbname'],
                        'USER': params.get('user', ''), 'PASSWORD': params.get('password', ''),
                        'HOST': params.get('host', ''), 'PORT': params.get('port', ''), 'CONN_MAX_AGE': None}
            _in_processes(peer, n, 1, _django_worker, settings, n)
            return _CLOCK.rate(peer)
    folder = tempfile.mkdtemp(prefix='bench-django-tasks-')
    try:
        settings = {'ENGINE': 'django.db.backends.sqlite3', 'NAME': os.path.join(folder, 'tasks.sqlite3'),
                    'CONN_MAX_AGE': None}
        _in_processes(peer, n, 1, _django_worker, settings, n)
        return _CLOCK.rate(peer)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _django_noop(i: int):
    """django-tasks-db's task; _django_worker makes the module's name for it a Task."""
    _CLOCK.tick(i)


def _django_worker(started, stop, database: dict, n: int):
    """The child: configure Django, migrate, enqueue n tasks, run db_worker's Worker until done."""
    import importlib.util

    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections, transaction
    builtin = importlib.util.find_spec('django.tasks') is not None     # Django 6
    apps = ['django_tasks_db'] if builtin else ['django_tasks', 'django_tasks_db']
    settings.configure(DATABASES={'default': database}, INSTALLED_APPS=apps, USE_TZ=True, LOGGING_CONFIG=None,
                       TASKS={'default': {'BACKEND': 'django_tasks_db.DatabaseBackend', 'QUEUES': ['default']}})
    django.setup()
    if builtin:
        from django.tasks import task
    else:
        from django_tasks import task
    from django_tasks_db.management.commands.db_worker import Worker
    try:
        call_command('migrate', verbosity=0, interactive=False)
        # The worker finds a task by its function's dotted path, which must name the Task itself,
        # as @task would have bound it; @task needs the settings, so it is applied only now (on
        # the module: when it is the parent's __main__, this function's globals are only a copy).
        noop = task()(_django_noop)
        setattr(sys.modules[_django_noop.__module__], '_django_noop', noop)
        for batch in _batches(n):
            with transaction.atomic():         # not one commit (one fsync on SQLite) per task
                for i in batch:
                    noop.enqueue(i)
        # batch: the worker stops when it finds no task ready; a stop from the parent (past the
        # deadline) ends it after its current task.
        worker = Worker(queue_names=['default'], interval=DJANGO_INTERVAL, batch=True, backend_name='default',
                        startup_delay=False, max_tasks=None, worker_id='bench-peers', excluded_queue_names=[])
        if not started():
            return

        def watch():
            while worker.running and not _finished(stop):
                time.sleep(0.01)
            worker.running = False

        watcher = threading.Thread(target=watch, name='django-tasks-db-stop', daemon=True)
        watcher.start()
        worker.run()
        worker.running = False
        watcher.join()
    finally:
        connections.close_all()


# oban (oban-py) on PostgreSQL, in a Python 3.12 process ###########################################
# bench/peer_oban.py installs oban's schema, enqueues, runs one Oban node with one queue and prints
# which job started when; here, its database is made and dropped and its figures checked.

def _oban(n: int) -> float:
    try:
        import psycopg  # noqa: F401 - here, to make and drop oban's database
    except ImportError as exc:
        raise Skip(f"pip install 'psycopg[binary]' ({exc})") from None
    setup = "pip install oban 'psycopg[binary]' in a Python 3.12 venv and set MQUEUE_BENCH_PY312 to its python"
    try:
        probe = subprocess.run([PY312, '-c', 'import oban, psycopg'], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Skip(f'oban needs Python 3.12: cannot run {PY312} ({exc}); {setup}') from None
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ['?'])[-1]
        raise Skip(f'oban is not importable by {PY312} ({last}); {setup}')
    with _pg_database(OBAN_DATABASE) as conninfo:
        _CLOCK.reset(n)
        limit = TIMEOUT + 2 * SETUP_TIMEOUT    # its own deadline is TIMEOUT from its worker's start
        try:
            child = subprocess.run([PY312, OBAN_SCRIPT, conninfo, str(n), str(OBAN_LIMIT), str(TIMEOUT)],
                                   capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:      # subprocess.run has killed and reaped it
            raise Skip(f'oban: its process did not finish within {limit:.0f} s') from None
        if child.returncode != 0:
            last = (child.stderr.strip().splitlines() or ['?'])[-1]
            raise Skip(f'oban: its process failed ({child.returncode}): {last}'[:300])
        report = json.loads(child.stdout)
        for i, started in report['ran']:
            _CLOCK.tick(i, started)
        if report['timed_out']:
            raise Skip(f'oban: only {_CLOCK.count} of {n} tasks ran within {TIMEOUT:.0f} s')
        return _CLOCK.rate('oban')


# Entry points #####################################################################################

_RUNNERS = {'rq': _rq, 'celery-sqlalchemy': _celery, 'procrastinate': _procrastinate,
            'huey-sqlite': _huey_sqlite, 'huey-redis': _huey_redis,
            'pgqueuer': _pgqueuer, 'chancy': _chancy,
            'django-tasks-db-postgresql': lambda n: _django_tasks_db(n, 'postgresql'),
            'django-tasks-db-sqlite': lambda n: _django_tasks_db(n, 'sqlite'),
            'oban': _oban}
_MULTIPROCESS = {'pgqueuer'}     # runners that take the number of processes


def drain_rate(peer: str, n: int, processes: int = 1) -> float:
    """Enqueue n no-op tasks (untimed), then time the peer's worker, in `processes` OS processes
    (one of PEERS[peer].processes), from the first task's start to the n-th's; return tasks/second.

    Checks that each task ran exactly once (RuntimeError if not). Cleans up after itself (its own
    Redis db, MariaDB database, PostgreSQL database, temp SQLite file, child processes). Raises
    Skip(reason) if the peer's package or server is unavailable, it does not support that many
    processes, or it does not finish within TIMEOUT."""
    if peer not in _RUNNERS:
        raise ValueError(f'unknown peer {peer!r}; one of {", ".join(PEERS)}')
    if n < 2:
        raise ValueError('n must be at least 2: the rate is timed from the first task to the n-th')
    if processes not in PEERS[peer].processes:
        raise Skip(f'{peer} runs here in {" or ".join(map(str, PEERS[peer].processes))} worker process(es), '
                   f'not {processes}')
    with _quiet():
        try:
            if peer in _MULTIPROCESS:
                return _RUNNERS[peer](n, processes)
            return _RUNNERS[peer](n)
        except _server_errors() as exc:   # e.g. the server went away in the middle of the run
            raise Skip(f'{peer}: {type(exc).__name__}: {exc}'.replace('\n', ' ')[:300]) from None
        finally:
            _CLOCK.reset(0)


def enqueue_many_rate(peer: str, n: int) -> float:
    """Time the peer's batch enqueue of n no-op tasks, ENQUEUE_BATCH (1,000) a call on one
    connection, around the calls only (its schema made beforehand, untimed); return tasks/second.
    Only pgqueuer's is measured (Skip for the others). Cleans up as drain_rate does."""
    if peer not in _RUNNERS:
        raise ValueError(f'unknown peer {peer!r}; one of {", ".join(PEERS)}')
    if peer != 'pgqueuer':
        raise Skip(f'{peer}: only pgqueuer\'s batch enqueue is measured here')
    with _quiet():
        try:
            return _pgqueuer_enqueue_rate(n)
        except _server_errors() as exc:
            raise Skip(f'{peer}: {type(exc).__name__}: {exc}'.replace('\n', ' ')[:300]) from None


def main(argv: list[str]) -> int:
    import argparse
    parser = argparse.ArgumentParser(description='Drain rates of peer task queues (tasks/s).')
    parser.add_argument('n', nargs='?', type=int, default=2000, help='tasks per drain (default 2000)')
    parser.add_argument('peers', nargs='*', metavar='PEER', help=f'default: all of {", ".join(PEERS)}')
    parser.add_argument('--processes', type=int, default=1, help='worker processes (default 1)')
    parser.add_argument('--enqueue-many', action='store_true',
                        help='also print "peer enqueue_many rate" where measured (pgqueuer)')
    args = parser.parse_args(argv)
    for peer in args.peers or PEERS:
        started = time.perf_counter()
        try:
            rate = drain_rate(peer, args.n, args.processes)
        except Skip as exc:
            print(f'{peer} skipped: {exc}', flush=True)
        else:
            print(f'{peer} {rate:.0f}', flush=True)
        settings = PEERS[peer].settings if peer in PEERS else '?'
        print(f'  ({peer}, {args.processes} process(es): {time.perf_counter() - started:.1f} s in all, '
              f'enqueue included; {settings})', file=sys.stderr)
        if args.enqueue_many and peer == 'pgqueuer':
            try:
                print(f'{peer} enqueue_many {enqueue_many_rate(peer, args.n):.0f}', flush=True)
            except Skip as exc:
                print(f'{peer} enqueue_many skipped: {exc}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
