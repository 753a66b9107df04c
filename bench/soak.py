"""Fault-injection soak: tasks keep their exactly-once database effects while workers are
SIGKILLed, their connections are KILLed and the server restarts.

    python bench/soak.py --tasks 3000 --workers 3 --seconds 60      # the full soak
    (test_mqueue.py runs a reduced one)

Each task inserts one ledger row, keyed by its task id, through the task's own transaction; one in
ten fails its first attempt. Meanwhile worker processes are killed with SIGKILL and restarted,
server connections are killed with KILL, and the MariaDB server is stopped and started once. At the
end every task must have exactly one ledger row and no task may be left. Prints a table and a JSON
line; exits 1 if a task was lost or ran twice.
"""

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pymysql

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import mqueue  # noqa: E402

URL = os.environ.get('MQUEUE_DATABASE_URL', 'mysql://root@127.0.0.1:3306/test')
connect = mqueue.connect_url(URL)
MARIADBD = '/usr/sbin/mariadbd'   # restarted only where it is installed: this machine's server


def registry(table):
    reg = mqueue.Registry(table=table, cron_table=f'{table}_cron')

    @reg.task(name='work', retries=5, backoff=0)
    def work(i, ledger, pause):
        time.sleep(pause)   # long enough for the faults to land mid-task
        context = mqueue.current()
        with context.connection.cursor() as cursor:
            cursor.execute(f'INSERT INTO {ledger} (task_id) VALUES (%s)', (context.id,))
        if i % 10 == 0 and context.retries == 0:
            raise RuntimeError('fails its first attempt, as planned')
    return reg


def serve(table, ledger):
    """A worker process of the soak."""
    mqueue.Worker(connect, registry=registry(table), lease=1.0, poll_interval=0.05, crons=False).run()


def wait(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def server_process(connect):
    """The MariaDB server behind ``connect``: (pid, command line, pid file), found by the pid file the
    server names itself, never by its binary's name (a Galera node, or a second server on this
    machine, runs the same binary)."""
    conn = connect()
    try:
        cursor = conn.cursor()
        cursor.execute('SELECT @@pid_file, @@datadir')
        pid_file, datadir = cursor.fetchone()
    finally:
        conn.close()
    pid_file = os.path.join(datadir, pid_file)   # absolute already, unless configured relative
    with open(pid_file) as file:
        pid = int(file.read().split()[0])
    with open(f'/proc/{pid}/cmdline', 'rb') as file:
        argv = [arg.decode() for arg in file.read().split(b'\0') if arg]
    return pid, argv, pid_file


def running(pid):
    """Whether a process is alive (a zombie is not: its parent may be an init that never reaps)."""
    try:
        with open(f'/proc/{pid}/stat') as file:
            return file.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def restart_server(connect=connect, timeout=60):
    """Shut the server behind ``connect`` down, wait for its process to end, start it again with
    the same command line and wait until it takes connections. Raises if it does not come back."""
    pid, argv, pid_file = server_process(connect)
    conn = connect()
    with contextlib.suppress(Exception):   # the server drops this connection too
        conn.cursor().execute('SHUTDOWN')
    with contextlib.suppress(Exception):
        conn.close()
    if not wait(lambda: not running(pid), timeout, 0.05):
        raise RuntimeError(f'MariaDB (pid {pid}) did not stop within {timeout}s')
    subprocess.run(['start-stop-daemon', '--start', '--background', '--pidfile', pid_file, '--exec', argv[0],
                    '--', *argv[1:]], check=True)

    def up():
        try:
            connect().close()
            return True
        except Exception:
            return False
    if not wait(up, timeout, 0.1):
        raise RuntimeError(f'MariaDB ({" ".join(argv)}) did not come back within {timeout}s')


def soak(tasks=300, workers=2, seconds=6.0, restart=True, pause=0.01, seed=None):
    """Run the soak; returns its report (a dict)."""
    rng = random.Random(seed)
    suffix = os.urandom(4).hex()
    table, ledger = f'soak_task_{suffix}', f'soak_ledger_{suffix}'
    reg = registry(table)
    conn = connect()
    cursor = conn.cursor()
    reg.create_tables(conn)
    cursor.execute(f'CREATE TABLE {ledger} (id BIGINT AUTO_INCREMENT PRIMARY KEY, task_id BIGINT NOT NULL, '
                   f'KEY (task_id)) ENGINE=InnoDB')
    reg.enqueue_many(conn, 'work', [[i, ledger, pause] for i in range(tasks)])
    conn.commit()
    cursor.execute(f'SELECT MIN(id), MAX(id) FROM {table}')
    first, last = cursor.fetchone()
    conn.close()
    faults = {'worker SIGKILL': 0, 'connection KILL': 0, 'server restart': 0}
    code = f'import sys; sys.path.insert(0, {os.path.join(ROOT, "bench")!r}); import soak; soak.serve({table!r}, {ledger!r})'
    spawn = lambda: subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [spawn() for _ in range(workers)]
    began = time.monotonic()
    restart_at = began + seconds / 2 if restart and os.path.exists(MARIADBD) else None

    def left():
        try:
            watcher = connect()
            try:
                c = watcher.cursor()
                c.execute(f'SELECT COUNT(*) FROM {table} WHERE dead_at IS NULL')
                return c.fetchone()[0]
            finally:
                watcher.close()
        except pymysql.err.OperationalError:
            return None
    try:
        while time.monotonic() - began < seconds:
            time.sleep(rng.uniform(0.1, 0.4))
            if restart_at and time.monotonic() >= restart_at:
                restart_server()
                faults['server restart'] += 1
                restart_at = None
            elif rng.random() < 0.5:
                victim = rng.randrange(len(procs))
                procs[victim].kill()
                procs[victim].wait()
                procs[victim] = spawn()
                faults['worker SIGKILL'] += 1
            else:
                with connect() as admin:
                    c = admin.cursor()
                    c.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND id <> CONNECTION_ID() "
                              "AND user = %s", (admin.db.decode() if isinstance(admin.db, bytes) else admin.db,
                                                admin.user.decode() if isinstance(admin.user, bytes) else admin.user))
                    ids = [row[0] for row in c.fetchall()]
                    if ids:
                        try:
                            c.execute('KILL CONNECTION %s', (rng.choice(ids),))
                            faults['connection KILL'] += 1
                        except pymysql.err.OperationalError:
                            pass   # it had gone already
        drained = wait(lambda: left() == 0, 120, 0.2)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    conn = connect()
    cursor = conn.cursor()
    cursor.execute(f'SELECT task_id, COUNT(*) FROM {ledger} GROUP BY task_id')
    runs = dict(cursor.fetchall())
    cursor.execute(f'SELECT COUNT(*) FROM {table}')
    remaining = cursor.fetchone()[0]
    cursor.execute(f'DROP TABLE {table}, {table}_cron, {table}_result, {ledger}')
    conn.close()
    expected = range(first, last + 1)
    return {'tasks': tasks, 'workers': workers, 'faults': faults, 'drained': drained,
            'duplicates': sum(1 for t in expected if runs.get(t, 0) > 1),
            'losses': sum(1 for t in expected if runs.get(t, 0) == 0), 'left in table': remaining,
            'wall seconds': round(time.monotonic() - began, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tasks', type=int, default=3000)
    parser.add_argument('--workers', type=int, default=3)
    parser.add_argument('--seconds', type=float, default=60.0, help='how long faults are injected')
    parser.add_argument('--no-restart', action='store_true', help='do not restart the server')
    args = parser.parse_args(argv)
    report = soak(args.tasks, args.workers, args.seconds, not args.no_restart)
    for key, value in report.items():
        print(f'{key:16} {value}')
    print(json.dumps(report))
    return 0 if report['drained'] and not report['duplicates'] and not report['losses'] else 1


if __name__ == '__main__':
    sys.exit(main())
