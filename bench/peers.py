"""Drain rates of other Python task queues, for comparison with mqueue.

Each peer runs a no-op task on ONE worker (a single process, the peer's simplest in-process worker,
in its normal single-worker configuration; its logging below ERROR silenced). ``drain_rate(peer, n)``
enqueues n tasks (not timed), then runs the worker and times it from the moment the first task
starts to the moment the n-th task starts: that span holds exactly n - 1 full cycles (finish a
task, fetch the next, start it), so worker start-up and shut-down are left out; the rate returned
is (n - 1) / span, in tasks per second.

Every peer cleans up after itself: its own Redis database number, its own MariaDB database, its
own PostgreSQL database, a temporary SQLite file. A peer whose package or server is missing, or
that does not finish within TIMEOUT seconds, raises Skip with a one-line reason.

    python bench/peers.py [N] [PEER ...]       # prints "peer rate" lines; N defaults to 2000

Where the servers are: REDIS_HOST/REDIS_PORT, MQUEUE_TEST_HOST/MQUEUE_TEST_PORT (MariaDB, root
with an empty password) and PG_CONNINFO (a libpq connection string for a database from which the
peer may create and drop its own) in the environment, with this machine's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

__all__ = ['PEERS', 'Skip', 'drain_rate']

PEERS = ['rq', 'celery-sqlalchemy', 'procrastinate', 'huey-sqlite', 'huey-redis']

TIMEOUT = 120.0      # seconds a peer may take to drain its n tasks
SETUP_TIMEOUT = 30.0  # seconds a peer's worker may take to start, or to stop

REDIS_HOST = os.environ.get('REDIS_HOST', '127.0.0.1')
REDIS_PORT = int(os.environ.get('REDIS_PORT', 6379))
RQ_REDIS_DB = 15      # flushed before and after the rq run
HUEY_REDIS_DB = 14    # flushed before and after the huey-redis run

MYSQL_HOST = os.environ.get('MQUEUE_TEST_HOST', '127.0.0.1')
MYSQL_PORT = int(os.environ.get('MQUEUE_TEST_PORT', 3306))
CELERY_DATABASE = 'bench_celery'        # created and dropped: kombu's tables live there

PG_CONNINFO = os.environ.get('PG_CONNINFO', 'host=127.0.0.1 port=5432 user=postgres dbname=test')
PROCRASTINATE_DATABASE = 'bench_procrastinate'  # created and dropped

PEER_LOGGERS = ('rq', 'celery', 'kombu', 'amqp', 'procrastinate', 'huey', 'sqlalchemy', 'psycopg', 'asyncio')

# What to install for each peer (the same strings as the [bench] extra).
REQUIREMENTS = {
    'rq': 'rq redis',
    'celery-sqlalchemy': 'celery kombu sqlalchemy pymysql',
    'procrastinate': "procrastinate 'psycopg[binary]'",
    'huey-sqlite': 'huey',
    'huey-redis': 'huey redis',
}


class Skip(Exception):
    """Raised with a one-line reason when a peer cannot run here."""


# The clock every peer's no-op task ticks ##########################################################

class _Clock:
    """Counts the no-op tasks run and notes when the first and the latest one started."""

    def __init__(self):
        self.reset(0)

    def reset(self, n: int, on_timeout=None):
        self.n = n
        self.count = 0
        self.first = self.last = None
        self.deadline = time.perf_counter() + TIMEOUT   # moved to the worker's start by start()
        self.on_timeout = on_timeout                    # called once, from a task, past the deadline
        self.timed_out = False
        self.done = threading.Event()

    def start(self):
        """The worker is about to start: the deadline counts from now."""
        self.deadline = time.perf_counter() + TIMEOUT

    def tick(self):
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1
        if self.count >= self.n:
            self.done.set()
        elif now > self.deadline and not self.timed_out:
            self.timed_out = True
            if self.on_timeout is not None:
                self.on_timeout()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.perf_counter())

    def expired(self) -> bool:
        return time.perf_counter() > self.deadline

    def rate(self, peer: str) -> float:
        if self.count < self.n:
            raise Skip(f'{peer}: only {self.count} of {self.n} tasks ran within {TIMEOUT:.0f} s')
        return (self.n - 1) / (self.last - self.first)


_CLOCK = _Clock()


def _noop():
    """The task every peer runs (peers that import tasks by dotted name import this one)."""
    _CLOCK.tick()


# Helpers ##########################################################################################

def _need(peer: str):
    """An ImportError below becomes Skip('pip install ...')."""
    @contextlib.contextmanager
    def guard():
        try:
            yield
        except ImportError as exc:
            raise Skip(f'pip install {REQUIREMENTS[peer]} ({exc})') from None
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


def _chunks(n: int, size: int = 1000):
    while n > 0:
        yield min(n, size)
        n -= size


def _server_errors() -> tuple:
    """The connection-level errors of whichever clients are installed."""
    errors = []
    for module, names in (('redis.exceptions', ('ConnectionError', 'TimeoutError')),
                          ('pymysql.err', ('OperationalError', 'InterfaceError')),
                          ('psycopg', ('OperationalError',)),
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


# rq ###############################################################################################

def _rq(n: int) -> float:
    with _need('rq'):
        import redis  # noqa: F401
        from rq import Queue, SimpleWorker
    conn = _redis(RQ_REDIS_DB)
    conn.flushdb()
    try:
        queue = Queue('bench', connection=conn)
        for size in _chunks(n):
            with conn.pipeline() as pipe:
                queue.enqueue_many([Queue.prepare_data(_noop) for _ in range(size)], pipeline=pipe)
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
        def noop():
            _CLOCK.tick()

        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)

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
        import psycopg
    try:
        admin = psycopg.connect(PG_CONNINFO, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        raise Skip(f'PostgreSQL unavailable ({PG_CONNINFO}): {exc}'.replace('\n', ' ')) from None
    conninfo = psycopg.conninfo.make_conninfo(PG_CONNINFO, dbname=PROCRASTINATE_DATABASE)
    try:
        admin.execute(f'DROP DATABASE IF EXISTS {PROCRASTINATE_DATABASE} WITH (FORCE)')
        admin.execute(f'CREATE DATABASE {PROCRASTINATE_DATABASE}')
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

        @app.task(name='bench_peers.noop')
        def noop():
            _CLOCK.tick()

        async def main():
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                for size in _chunks(n):
                    await noop.batch_defer_async(*({} for _ in range(size)))
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
    finally:
        def drop():
            with psycopg.connect(PG_CONNINFO, autocommit=True, connect_timeout=5) as again:
                again.execute(f'DROP DATABASE IF EXISTS {PROCRASTINATE_DATABASE} WITH (FORCE)')
        _cleanup(f'drop database {PROCRASTINATE_DATABASE}', drop)
        _cleanup('close the admin connection', admin.close)


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
        for _ in range(n):
            noop()
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
        for _ in range(n):
            noop()
        return _huey_drain(huey, n, 'huey-redis')
    finally:
        _cleanup(f'flush Redis db {HUEY_REDIS_DB}', conn.flushdb)
        conn.close()


# Entry points #####################################################################################

_RUNNERS = {'rq': _rq, 'celery-sqlalchemy': _celery, 'procrastinate': _procrastinate,
            'huey-sqlite': _huey_sqlite, 'huey-redis': _huey_redis}


def drain_rate(peer: str, n: int) -> float:
    """Enqueue n no-op tasks (untimed), then time how long ONE worker (single process, the peer's
    simplest in-process worker) takes to execute all n; return tasks/second. Cleans up after itself
    (its own Redis db / key prefix, own MariaDB tables or database, own PG schema/database, temp
    SQLite file). Raises Skip(reason) if the peer's package or server is unavailable."""
    if peer not in _RUNNERS:
        raise ValueError(f'unknown peer {peer!r}; one of {", ".join(PEERS)}')
    if n < 2:
        raise ValueError('n must be at least 2: the rate is timed from the first task to the n-th')
    with _quiet():
        try:
            return _RUNNERS[peer](n)
        except _server_errors() as exc:   # e.g. the server went away in the middle of the run
            raise Skip(f'{peer}: {type(exc).__name__}: {exc}'.replace('\n', ' ')[:300]) from None
        finally:
            _CLOCK.reset(0)


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 2000
    for peer in argv[1:] or PEERS:
        started = time.perf_counter()
        try:
            rate = drain_rate(peer, n)
        except Skip as exc:
            print(f'{peer} skipped: {exc}', flush=True)
        else:
            print(f'{peer} {rate:.0f}', flush=True)
        print(f'  ({peer}: {time.perf_counter() - started:.1f} s in all, enqueue included)', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
