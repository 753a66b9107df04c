"""A PostgreSQL primary and a streaming standby on this machine, for issue 18's failover scenario:
started, and always stopped, by a context manager.

    python bench/failover.py                 # the scenario with synchronous, then asynchronous, replication
    python bench/failover.py --tasks 6000 --asynchronous

    with failover.Pair(synchronous=True) as pair:
        pair.url        # postgresql://postgres@127.0.0.1:25432,127.0.0.1:25433/test?target_session_attrs=read-write...
        pair.kill_primary(); pair.promote()

Each server is the machine's own PostgreSQL (its newest version's binaries) with its own data
directory under a temporary folder, its own port and socket, run as the user postgres when this
runs as root; nothing of the machine's own cluster is read or touched. Workers reach the pair with
one multi-host URL whose target_session_attrs=read-write makes libpq pick whichever server takes
writes: the primary, and after a failover the promoted standby. Its folder and ports are fixed:
a pair left by a killed run is stopped by the next, and so is one another run is using: run one
at a time.
"""
import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(max(glob.glob('/usr/lib/postgresql/*/bin'), key=lambda path: int(path.split('/')[-2]), default='/usr/bin'))
ROOT = Path(tempfile.gettempdir()) / 'mqueue-failover'
USER = 'postgres' if os.geteuid() == 0 else None   # (PostgreSQL refuses to run as root)
PRIMARY_PORT, STANDBY_PORT = 25432, 25433


class Pair:
    """A primary (port 25432) and a standby streaming from it (25433); a context manager that stops
    both. ``synchronous``: a commit returns once the standby has the transaction on disk."""

    def __init__(self, synchronous=True, root=ROOT):
        self.synchronous, self.root = synchronous, Path(root)
        self.primary, self.standby = self.root / 'primary', self.root / 'standby'
        self.url = (f'postgresql://postgres@127.0.0.1:{PRIMARY_PORT},127.0.0.1:{STANDBY_PORT}/test'
                    '?target_session_attrs=read-write&connect_timeout=2')

    def __enter__(self):
        self.stop_all()   # (a pair a killed run left behind)
        subprocess.run(['rm', '-rf', str(self.root)], check=True)
        self.root.mkdir(parents=True)
        if USER:
            subprocess.run(['chown', USER, str(self.root)], check=True)
        try:
            self._run(BIN / 'initdb', '-D', self.primary, '-U', 'postgres', '--auth=trust', '-E', 'UTF8')
            self._configure(self.primary, PRIMARY_PORT, [
                "wal_level = replica", "max_wal_senders = 5", "hot_standby = on", "fsync = off"])
            with open(self.primary / 'pg_hba.conf', 'a') as hba:
                hba.write('host replication all 127.0.0.1/32 trust\n')
            self._start(self.primary)
            self.sql(PRIMARY_PORT, 'CREATE DATABASE test', database='postgres')
            self._run(BIN / 'pg_basebackup', '-h', '127.0.0.1', '-p', PRIMARY_PORT, '-U', 'postgres', '-D',
                      self.standby, '-R', '-X', 'stream', '--checkpoint=fast')
            self._configure(self.standby, STANDBY_PORT, [
                f"primary_conninfo = 'host=127.0.0.1 port={PRIMARY_PORT} user=postgres application_name=standby'"])
            self._start(self.standby)
            if self.synchronous:   # (only now: until a standby streams, every commit would wait for one)
                self.sql(PRIMARY_PORT, "ALTER SYSTEM SET synchronous_standby_names = 'standby'")
                self.sql(PRIMARY_PORT, 'SELECT pg_reload_conf()')
            deadline = time.monotonic() + 60
            want = 'sync' if self.synchronous else 'async'
            while self.sql(PRIMARY_PORT, "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'") != [(want,)]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f'the standby is not streaming ({want}) after 60 s: see {self.root}/*.log')
                time.sleep(0.1)
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, *exc):
        self.stop_all()

    def _run(self, *argv):
        subprocess.run([str(arg) for arg in argv], check=True, capture_output=True, text=True, user=USER)

    def _configure(self, datadir, port, lines):
        with open(datadir / 'postgresql.auto.conf', 'a') as conf:
            conf.write('\n'.join([f'port = {port}', "listen_addresses = '127.0.0.1'",
                                  f"unix_socket_directories = '{datadir}'", *lines]) + '\n')

    def _start(self, datadir):
        self._run(BIN / 'pg_ctl', '-D', datadir, '-l', self.root / f'{datadir.name}.log', '-w', 'start')

    def kill_primary(self, stuck=None):
        """A crash: `pg_ctl stop -m immediate`, the primary's processes end at once, nothing
        flushed, no client told; `stuck`, a child process stopped with SIGSTOP, is killed once the
        shutdown has begun (it could not end by itself, nor send anything more)."""
        stop = subprocess.Popen([str(BIN / 'pg_ctl'), '-D', str(self.primary), '-m', 'immediate', 'stop'],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=USER)
        if stuck is not None:
            time.sleep(0.1)   # (the postmaster shutting down: a child's death is no crash to recover from)
            with contextlib.suppress(ProcessLookupError):
                os.kill(stuck, signal.SIGKILL)
        if stop.wait(60) != 0:
            raise RuntimeError('the primary did not stop')

    def promote(self):
        """The standby takes over: it ends recovery and takes writes (and waits for nothing)."""
        self._run(BIN / 'pg_ctl', '-D', self.standby, '-w', 'promote')

    def stop_all(self):
        for datadir in (self.primary, self.standby):
            if (datadir / 'postmaster.pid').exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self._run(BIN / 'pg_ctl', '-D', datadir, '-m', 'immediate', 'stop')

    def sql(self, port, statement, database='test'):
        import psycopg
        with psycopg.connect(host='127.0.0.1', port=port, user='postgres', dbname=database,
                             autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []


def scenario(pair, tasks=3000, workers=3, batch=20, deadline=120.0, lag=0.5, task_seconds=0.0):
    """Issue 18's failover scenario: `tasks` tasks waiting (replicated), each inserting a ledger
    row through its own transaction, drained by `workers` processes connected with the pair's
    multi-host URL, while one more process enqueues a task every few milliseconds, each committed;
    once a third are done the primary's WAL sender is stopped for `lag` seconds (a standby that
    far behind: a slow network), then the primary is killed (immediate) and the standby promoted.
    Each task also sleeps `task_seconds`, so that a drain this fast still has tasks left then.
    Returns the
    report: duplicate effects and losses on the new primary, Python re-runs, completions and
    enqueues whose commit had returned (acknowledged) before the failover and that ran again or
    were lost, and how long the workers took to go on."""
    import collections
    import multiprocessing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import mqueue
    registry = mqueue.Registry(table='failover_task', cron_table='failover_cron')
    logs = Path(tempfile.mkdtemp(prefix='mqueue-failover-runs-'))

    def note(kind, key):
        with open(logs / f'{kind}.{os.getpid()}', 'a') as file:
            file.write(f'{key} {time.time():.6f}\n')

    keys = {}   # task id -> key, in each worker process (for its task_succeeded events)

    @registry.task(name='ledger')
    def ledger(key):
        context = mqueue.current()
        keys[context.id] = key
        with context.connection.cursor() as cursor:
            cursor.execute('INSERT INTO failover_ledger (task_key) VALUES (%s)', (key,))
        note('ran', key)
        if task_seconds:
            time.sleep(task_seconds)

    def work():
        # task_succeeded comes once the batch's commit has returned: a completion acknowledged
        acknowledged = {'task_succeeded': lambda context, **info: note('done', keys.pop(context.id, '?'))}
        mqueue.Worker(mqueue.connect_url(pair.url), registry=registry, batch=batch, poll_interval=0.05,
                      crons=False, hooks=acknowledged).run()   # until SIGTERM

    def enqueue_steadily(stop):
        connect, n, conn = mqueue.connect_url(pair.url), 0, None
        while not stop.is_set():
            try:
                conn = conn or connect()
                n += 1   # (a key used once: a commit that failed may have committed all the same)
                registry.enqueue(conn, 'ledger', [f'e-{n}'])
                conn.commit()
                note('enqueued', f'e-{n}')
            except Exception:
                with contextlib.suppress(Exception):
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.005)

    conn = mqueue.connect_url(pair.url)()
    with conn.cursor() as cursor:
        registry.create_tables(conn)
        cursor.execute('CREATE TABLE failover_ledger (id BIGSERIAL PRIMARY KEY, task_key TEXT NOT NULL, '
                       'at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())')
        registry.enqueue_many(conn, 'ledger', [[f't-{i}'] for i in range(tasks)])
    conn.commit()
    conn.close()
    caught_up_by = time.monotonic() + 60   # (the tasks are on the standby too: only what happens next is at stake)
    while pair.sql(PRIMARY_PORT, 'SELECT pg_current_wal_lsn() = replay_lsn FROM pg_stat_replication') != [(True,)]:
        if time.monotonic() > caught_up_by:
            raise RuntimeError('the standby did not catch up in 60 s')
        time.sleep(0.05)

    fork = multiprocessing.get_context('fork')
    stop_enqueuing = fork.Event()
    processes = [fork.Process(target=work) for _ in range(workers)]
    enqueuer = fork.Process(target=enqueue_steadily, args=(stop_enqueuing,))
    began = time.monotonic()
    for process in [*processes, enqueuer]:
        process.start()
    faults, killed_at, resumed_in = [], None, None
    try:
        while time.monotonic() - began < deadline:
            port = STANDBY_PORT if killed_at else PRIMARY_PORT
            if killed_at is None:
                done, = pair.sql(port, "SELECT COUNT(DISTINCT task_key) FROM failover_ledger WHERE task_key LIKE 't-%%'")[0]
                if done >= tasks // 3:   # (not in the suppress below: a failure here fails the run)
                    # The standby `lag` behind: the primary's WAL sender stopped (not the standby's
                    # receiver: what its socket holds would still arrive), then the primary killed.
                    sender, = pair.sql(PRIMARY_PORT, 'SELECT pid FROM pg_stat_replication')[0]
                    os.kill(sender, signal.SIGSTOP)
                    try:
                        time.sleep(lag)
                        killed_at = time.time()
                        pair.kill_primary(stuck=sender)
                    finally:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(sender, signal.SIGKILL)
                    faults.append(f'standby {lag:g} s behind, then the primary killed (immediate) at {done} tasks done')
                    time.sleep(1)
                    pair.promote()
                    faults.append(f'standby promoted {time.time() - killed_at:.1f} s after the kill began')
            with contextlib.suppress(Exception):   # (the new primary may refuse for a moment)
                if killed_at and resumed_in is None:
                    first, = pair.sql(STANDBY_PORT, 'SELECT EXTRACT(EPOCH FROM MIN(at)) FROM failover_ledger '
                                                    f'WHERE at > to_timestamp({killed_at})')[0]
                    resumed_in = None if first is None else round(float(first) - killed_at, 2)
                if killed_at and time.time() - killed_at > 3:
                    stop_enqueuing.set()
                left, = pair.sql(port, f'SELECT COUNT(*) FROM {registry.table}')[0]
                if killed_at and stop_enqueuing.is_set() and not enqueuer.is_alive() and left == 0:
                    break
            if stop_enqueuing.is_set() and enqueuer.is_alive():
                enqueuer.join(0.1)
            time.sleep(0.2)
        seconds = time.monotonic() - began
    finally:
        stop_enqueuing.set()
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process in [*processes, enqueuer]:
            process.join(60)
            if process.is_alive():
                process.kill()
                process.join()
    port = STANDBY_PORT if killed_at else PRIMARY_PORT
    effects = collections.Counter(dict(pair.sql(port, 'SELECT task_key, COUNT(*) FROM failover_ledger GROUP BY task_key')))
    left = {json.loads(args)[0] for args, in pair.sql(port, f'SELECT args FROM {registry.table}')}
    for table in ('failover_ledger', registry.table, registry.cron_table, registry.result_table, registry.counts_table):
        pair.sql(port, f'DROP TABLE IF EXISTS {table}')

    def read(kind):
        rows = [line.split() for path in logs.glob(f'{kind}.*') for line in path.read_text().splitlines()]
        return [(key, float(at)) for key, at in rows]
    ran, done, enqueued = read('ran'), read('done'), read('enqueued')
    subprocess.run(['rm', '-rf', str(logs)], check=True)
    runs = collections.Counter(key for key, _ in ran)
    first_acknowledged = {}   # key -> when its completion was first acknowledged (the old primary may as it stops)
    for key, at in done:
        first_acknowledged[key] = min(at, first_acknowledged.get(key, at))
    expected = {f't-{i}' for i in range(tasks)} | {key for key, _ in enqueued}
    return {
        'tasks': tasks, 'enqueued_during_run': len(enqueued), 'workers': workers,
        'replication': 'synchronous' if pair.synchronous else 'asynchronous', 'seconds': round(seconds, 1),
        'faults': faults, 'workers_went_on_after_s': resumed_in,
        'duplicate_effects': sum(count - 1 for count in effects.values()),
        'lost': len(expected - set(effects) - left), 'left': len(left),
        'python_reruns': sum(count - 1 for count in runs.values()),
        'acknowledged_before_failover': sum(killed_at is not None and at < killed_at for _, at in done),
        'acknowledged_completions_run_again': len({key for key, at in ran if at > first_acknowledged.get(key, at)}),
        'acknowledged_enqueues_lost': len({key for key, _ in enqueued} - set(effects) - left),
    }


def main():
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tasks', type=int, default=6000, help='tasks waiting at the start (default 6000)')
    parser.add_argument('--workers', type=int, default=3, help='worker processes (default 3)')
    parser.add_argument('--lag', type=float, default=0.5, help='seconds the standby is behind when the primary dies '
                        '(its WAL sender stopped that long first; default 0.5)')
    parser.add_argument('--synchronous', action='store_true', help='only with synchronous replication')
    parser.add_argument('--asynchronous', action='store_true', help='only with asynchronous replication')
    args = parser.parse_args()
    modes = [mode for mode, only in ((True, args.synchronous), (False, args.asynchronous)) if only] or [True, False]
    failed = False
    for synchronous in modes:
        with Pair(synchronous=synchronous) as pair:
            report = scenario(pair, args.tasks, args.workers, lag=args.lag)
        print('failover:', json.dumps(report, indent=2), flush=True)
        failed = failed or len(report['faults']) != 2 or report['workers_went_on_after_s'] is None or bool(
            report['left'] or report['duplicate_effects'] or (synchronous and (
            report['lost'] or report['acknowledged_completions_run_again'] or report['acknowledged_enqueues_lost'])))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
