"""A MariaDB Galera cluster of three nodes on this machine, for issue 18's scenarios: started, and
always stopped, by a context manager.

    python bench/galera.py          # starts it, prints the nodes' URLs, stops it on Enter (or Ctrl-C)
    python bench/galera.py --scenario   # issue 18's scenario: workers on every node, a node killed
    python bench/galera.py --drain 20000 --workers 6    # throughput: mqueue's workers on every node
    python bench/galera.py --long 5     # a task running ten times its lease, a worker on every node

    with galera.Cluster() as cluster:
        cluster.urls                # mysql://root@127.0.0.1:23307/test, ...:23308, ...:23309
        cluster.kill(1)             # SIGKILL node 1 (0-based); cluster.start(1) brings it back

Each node is the machine's own mariadbd (Debian's galera-4 provides the provider library) with
its own data directory under a temporary folder, its own ports, socket and pid file, started with
--no-defaults: nothing is read from, or written to, the main server's files. Nodes are found, and
stopped, by their pid files only, never by the binary's name, which the main server shares: a
cluster never touches the main server, and one left over by a killed run is stopped by the next
(its folder is the same), and so is one another run is using: run one at a time. Joiners get
their state by rsync (SST) from the first node.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MARIADBD = '/usr/sbin/mariadbd'
PROVIDER = next((path for path in ('/usr/lib/galera/libgalera_smm.so', '/usr/lib/libgalera_smm.so')
                 if os.path.exists(path)), '/usr/lib/galera/libgalera_smm.so')
ROOT = Path(tempfile.gettempdir()) / 'mqueue-galera'
USER = 'mysql' if os.geteuid() == 0 else os.environ.get('USER', 'mysql')   # whom the nodes run as
# A killed node is seen gone within 5 s (defaults: suspected after 5 s, evicted after 15 s),
# so that it can rejoin as soon as it is started again: one loopback host, no network to wait for.
FAST_FAILURE_DETECTION = 'evs.suspect_timeout=PT3S;evs.inactive_timeout=PT5S'
SQL_PORT, GROUP_PORT = 23307, 24567   # node n: SQL_PORT + n; group, IST and SST ports GROUP_PORT + 10 n (+1, +2)


class Cluster:
    """Three (or `nodes`) Galera nodes on 127.0.0.1; a context manager that stops them all."""

    def __init__(self, nodes=3, root=ROOT, name='mqueue-test'):
        self.nodes, self.root, self.name = nodes, Path(root), name
        self.urls = [f'mysql://root@127.0.0.1:{SQL_PORT + n}/test' for n in range(nodes)]
        self._processes = {}   # node -> its Popen (reaped when it ends)

    def __enter__(self):
        self.stop_all()   # (a cluster a killed run left behind)
        for n in range(self.nodes):
            self._install(n)
        try:
            for n in range(self.nodes):
                self.start(n, bootstrap=(n == 0))
            self.wait_synced(range(self.nodes))
            self.sql(0, 'CREATE DATABASE IF NOT EXISTS test')
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, *exc):
        self.stop_all()

    # one node

    def datadir(self, n):
        return self.root / f'node{n}'

    def pid_file(self, n):
        return self.datadir(n) / 'mariadbd.pid'

    def _install(self, n):
        datadir = self.datadir(n)
        if datadir.exists():
            subprocess.run(['rm', '-rf', str(datadir)], check=True)
        datadir.mkdir(parents=True)
        subprocess.run(['mariadb-install-db', '--no-defaults', f'--datadir={datadir}', f'--user={USER}',
                        '--auth-root-authentication-method=normal', '--skip-test-db'],
                       check=True, capture_output=True, text=True)
        if os.geteuid() == 0:   # (the nodes run as USER: the rsync daemon of a joiner's state transfer
            subprocess.run(['chown', '-R', f'{USER}:{USER}', str(self.root)], check=True)   # run by root drops to nobody)

    def argv(self, n, bootstrap=False):
        datadir, group = self.datadir(n), [GROUP_PORT + 10 * m for m in range(self.nodes)]
        return [MARIADBD, '--no-defaults', f'--datadir={datadir}', f'--socket={datadir}/mariadbd.sock',
                f'--pid-file={self.pid_file(n)}', f'--port={SQL_PORT + n}', '--bind-address=127.0.0.1',
                f'--user={USER}', f'--log-error={datadir}/error.log', '--binlog-format=ROW',
                '--default-storage-engine=InnoDB', '--innodb-autoinc-lock-mode=2', '--innodb-buffer-pool-size=64M',
                '--wsrep-on=ON', f'--wsrep-provider={PROVIDER}', f'--wsrep-cluster-name={self.name}',
                '--wsrep-cluster-address=gcomm://' + ','.join(f'127.0.0.1:{port}' for port in group),
                f'--wsrep-node-address=127.0.0.1:{group[n]}', f'--wsrep-node-name=node{n}',
                f'--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{group[n]};'
                f'ist.recv_addr=127.0.0.1:{group[n] + 1};' + FAST_FAILURE_DETECTION,
                '--wsrep-sst-method=rsync', f'--wsrep-sst-receive-address=127.0.0.1:{group[n] + 2}',
                *(['--wsrep-new-cluster'] if bootstrap else [])]

    def start(self, n, bootstrap=False, timeout=120):
        """Start node n (the first of a new cluster if `bootstrap`) and wait until it takes connections."""
        log = open(self.datadir(n) / 'stdout.log', 'ab')
        self._processes[n] = subprocess.Popen(self.argv(n, bootstrap), stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)   # (its own process group: its SST scripts too)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if self.status(n, 'wsrep_ready') == 'ON':
                    return
            time.sleep(0.2)
        raise RuntimeError(f'galera node {n} did not come up in {timeout}s: see {self.datadir(n)}/error.log')

    def pid(self, n):
        try:
            return int(self.pid_file(n).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def kill(self, n, sig=signal.SIGKILL, timeout=60):
        """Signal node n (SIGKILL: a crash; SIGTERM: a clean stop) and wait for its process to end."""
        pid = self.pid(n)
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while _alive(pid):
                    time.sleep(0.05)
        process = self._processes.pop(n, None)
        if process is not None:   # its group: a state transfer's scripts and rsync left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file(n).unlink()

    def stop_all(self):
        for n in range(self.nodes):
            self.kill(n, signal.SIGTERM, timeout=30)

    # the cluster

    def connect(self, n, database='mysql'):
        import pymysql
        return pymysql.connect(host='127.0.0.1', port=SQL_PORT + n, user='root', database=database,
                               autocommit=True, connect_timeout=2)

    def sql(self, n, statement):
        conn = self.connect(n)
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement)
                return cursor.fetchall()
        finally:
            conn.close()

    def status(self, n, variable):
        rows = self.sql(n, f"SHOW STATUS LIKE '{variable}'")
        return rows[0][1] if rows else None

    def wait_synced(self, nodes, timeout=120):
        """Wait until every node of `nodes` is synced in a cluster of all of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if all(self.status(n, 'wsrep_local_state_comment') == 'Synced'
                       and int(self.status(n, 'wsrep_cluster_size')) == self.nodes for n in nodes):
                    return
            time.sleep(0.2)
        raise RuntimeError(f'galera nodes {list(nodes)} not synced in a cluster of {self.nodes} within {timeout}s')


def _alive(pid):
    """Whether a process is alive (a zombie is not)."""
    try:
        with open(f'/proc/{pid}/stat') as file:
            return file.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, IndexError):
        return False


def drain(cluster, tasks, workers, batch=20, nodes=None):
    """A first look at mqueue on the cluster (issue 18 has the full scenarios): `tasks` tasks, each
    inserting a ledger row in its own transaction, drained by `workers` processes spread over the
    nodes (the first `nodes` of them; default all); returns the duplicate effects, losses and Python
    re-runs, and the conflicts the workers retried (certification failures are deadlock errors at
    commit)."""
    import collections
    import multiprocessing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import mqueue
    registry = mqueue.Registry(table='galera_task', cron_table='galera_cron')
    runs = Path(tempfile.mkdtemp(prefix='mqueue-galera-runs-'))

    @registry.task(name='ledger')
    def ledger():
        context = mqueue.current()
        context.connection.cursor().execute('INSERT INTO galera_ledger (task_id) VALUES (%s)', (context.id,))
        with open(runs / str(os.getpid()), 'a') as file:   # (the Python runs, committed or not)
            file.write(f'{context.id}\n')

    def work(url, conflicts):
        worker = mqueue.Worker(mqueue.connect_url(url), registry=registry, batch=batch, crons=False,
                               poll_interval=0.05)
        worker.run(burst=True)
        conflicts.put(worker.stats['lock_conflicts'])

    conn = mqueue.connect_url(cluster.urls[0])()
    cursor = conn.cursor()
    registry.create_tables(conn)
    cursor.execute('CREATE TABLE IF NOT EXISTS galera_ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, '
                   'task_id BIGINT NOT NULL) ENGINE=InnoDB')
    for start in range(0, tasks, 1000):
        registry.enqueue_many(conn, 'ledger', [[]] * min(1000, tasks - start))
    conn.commit()
    fork = multiprocessing.get_context('fork')
    conflicts = fork.Queue()
    processes = [fork.Process(target=work, args=(cluster.urls[n % (nodes or cluster.nodes)], conflicts))
                 for n in range(workers)]
    began = time.monotonic()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    seconds = time.monotonic() - began
    cursor.execute('SELECT COUNT(*), COUNT(DISTINCT task_id) FROM galera_ledger')
    effects, distinct = cursor.fetchone()
    cursor.execute('SELECT COUNT(*) FROM galera_task')
    left = cursor.fetchone()[0]
    for table in ('galera_ledger', registry.table, registry.cron_table, registry.result_table, registry.counts_table):
        cursor.execute(f'DROP TABLE IF EXISTS {table}')
    conn.commit()
    conn.close()
    ran = collections.Counter(int(line) for path in runs.iterdir() for line in path.read_text().split())
    subprocess.run(['rm', '-rf', str(runs)], check=True)
    return {'tasks': tasks, 'workers': workers, 'nodes': nodes or cluster.nodes, 'tasks_per_second': round(tasks / seconds),
            'duplicate_effects': effects - distinct, 'lost': tasks - distinct - left, 'left': left,
            'python_reruns': sum(n - 1 for n in ran.values()), 'conflicts_retried': sum(conflicts.get() for _ in processes)}


def scenario(cluster, tasks=6000, workers_per_node=2, kill=1, lease=5.0, batch=20, deadline=120.0):
    """Issue 18's Galera scenario: mqueue with workers on every node under faults. Tasks are
    enqueued from every node in the caller's transaction (and a few rolled back there), each
    inserting a ledger row through its own transaction; a cron fires every second with a
    scheduler in every worker; `kill` (a node's index, or None) is SIGKILLed once a third of the
    tasks are done and started again 2 s later. Workers (which tell they run on a cluster's node:
    no rescue, the lease renewed as the fence between nodes) stop once every task is done and the restarted node's workers
    have run tasks again. Returns the report: duplicate effects and losses (both must be 0),
    Python re-runs, conflicts retried, task failures, the cron's fires and duplicates."""
    import collections
    import multiprocessing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import mqueue
    registry = mqueue.Registry(table='galera_task', cron_table='galera_cron')
    runs = Path(tempfile.mkdtemp(prefix='mqueue-galera-runs-'))

    def record(key):
        """The task's effect, in its transaction: a ledger row naming the node that ran it."""
        context = mqueue.current()
        with context.connection.cursor() as cursor:
            cursor.execute('INSERT INTO galera_ledger (kind, task_key, node) VALUES (%s, %s, @@wsrep_node_name)',
                           ('cron' if key is None else 'task', key or context.eta.isoformat()))
            if key and key.endswith('0'):   # one task in ten: a row every node's tasks write (conflicts)
                cursor.execute('UPDATE galera_counter SET n = n + 1 WHERE id = 1')
        with open(runs / str(os.getpid()), 'a') as file:   # (the Python runs, committed or not)
            file.write(f'{key or "cron:" + context.eta.isoformat()}\n')

    registry.task(name='ledger')(lambda key: (time.sleep(0.002), record(key)))
    registry.cron('* * * * * *', name='tick', overlap=True)(lambda: record(None))

    def work(url, report):
        failures = collections.Counter()
        worker = mqueue.Worker(mqueue.connect_url(url), registry=registry, batch=batch, lease=lease,
                               poll_interval=0.05,   # (no rescue_after=None: the worker tells it is a node)
                               hooks={'task_failed': lambda context, **info: failures.update([info['error'][:80]])})
        worker.run()   # until SIGTERM
        report.put({'conflicts': {kind: worker.stats[f'{kind}_conflicts'] for kind in ('claim', 'batch', 'task')},
                    'failures': dict(failures)})

    conn = cluster.connect(0, 'test')
    cursor = conn.cursor()
    for table in ('galera_ledger', 'galera_counter', registry.table, registry.cron_table, registry.result_table,
                  registry.counts_table):
        cursor.execute(f'DROP TABLE IF EXISTS {table}')
    registry.create_tables(conn)
    cursor.execute('CREATE TABLE galera_counter (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB')
    cursor.execute('INSERT INTO galera_counter VALUES (1, 0)')
    cursor.execute('CREATE TABLE galera_ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, kind VARCHAR(8) NOT NULL, '
                   'task_key VARCHAR(64) NOT NULL, node VARCHAR(16) NOT NULL, '
                   'at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB')
    conn.close()
    keys = []
    for n in range(cluster.nodes):   # the caller's transaction on each node: committed, then one rolled back
        node = mqueue.connect_url(cluster.urls[n])()
        mine = [f'n{n}-{i}' for i in range(n, tasks, cluster.nodes)]
        for start in range(0, len(mine), 1000):
            registry.enqueue_many(node, 'ledger', [[key] for key in mine[start:start + 1000]])
        node.commit()
        keys += mine
        registry.enqueue_many(node, 'ledger', [[f'rolled-back-{n}-{i}'] for i in range(10)])
        node.rollback()
        node.close()

    fork = multiprocessing.get_context('fork')
    report = fork.Queue()
    processes = [(n, fork.Process(target=work, args=(cluster.urls[n], report)))
                 for n in range(cluster.nodes) for _ in range(workers_per_node)]
    began = time.monotonic()
    for _, process in processes:
        process.start()
    faults, watch = [], cluster.connect(0 if kill != 0 else 1, 'test')
    restarted_at, done, ran_after_restart = None, 0, 0

    def ledger(sql):
        with watch.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()
    try:
        while time.monotonic() - began < deadline:
            done, = ledger("SELECT COUNT(DISTINCT task_key) FROM galera_ledger WHERE kind = 'task'")
            if kill is not None and not faults and done >= tasks // 3:
                cluster.kill(kill)
                faults.append(f'node{kill} SIGKILL at {done} tasks done')
                time.sleep(2)
                restart = time.monotonic()
                cluster.start(kill)
                cluster.wait_synced([kill])
                restarted_at, = ledger('SELECT NOW(6)')
                faults.append(f'node{kill} back and synced in {time.monotonic() - restart:.1f} s')
            if restarted_at is not None:
                ran_after_restart, = ledger(f"SELECT COUNT(*) FROM galera_ledger WHERE node = 'node{kill}' "
                                            f"AND at > '{restarted_at}'")
            if done >= tasks and (restarted_at is None or ran_after_restart):
                break
            time.sleep(0.2)
        seconds = time.monotonic() - began
    finally:
        for _, process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for _, process in processes:
            process.join(60)
            if process.is_alive():
                process.kill()
                process.join()
        watch.close()
    stats = [report.get(timeout=5) for _ in processes if not report.empty()]
    conn = cluster.connect(0 if kill != 0 else 1, 'test')
    with conn.cursor() as cursor:
        cursor.execute("SELECT task_key, COUNT(*) FROM galera_ledger WHERE kind = 'task' GROUP BY task_key")
        effects = dict(cursor.fetchall())
        cursor.execute("SELECT task_key, COUNT(*) FROM galera_ledger WHERE kind = 'cron' GROUP BY task_key")
        fires = dict(cursor.fetchall())
        cursor.execute(f'SELECT args FROM {registry.table} WHERE name = %s', ('ledger',))
        left = {json.loads(args)[0] for args, in cursor.fetchall()}
        cursor.execute("SELECT node, COUNT(*) FROM galera_ledger GROUP BY node ORDER BY node")
        per_node = dict(cursor.fetchall())
        cursor.execute(f'SELECT COUNT(*) FROM {registry.table} WHERE dead_at IS NOT NULL')
        dead, = cursor.fetchone()
        cursor.execute('SELECT n FROM galera_counter')
        counter, = cursor.fetchone()
        for table in ('galera_ledger', 'galera_counter', registry.table, registry.cron_table, registry.result_table,
                      registry.counts_table):
            cursor.execute(f'DROP TABLE IF EXISTS {table}')
    conn.close()
    ran = collections.Counter(line for path in runs.iterdir() for line in path.read_text().split())
    subprocess.run(['rm', '-rf', str(runs)], check=True)
    failures = collections.Counter()
    for each in stats:
        failures.update(each['failures'])
    return {
        'tasks': tasks, 'workers': len(processes), 'nodes': cluster.nodes, 'seconds': round(seconds, 1),
        'faults': faults, 'restarted_node_ran': ran_after_restart,
        'duplicate_effects': sum(count - 1 for count in effects.values()),
        'lost': len(set(keys) - set(effects) - left), 'left': len(left), 'dead': dead,
        'rolled_back_ran': sum(key.startswith('rolled-back') for key in effects),
        'python_reruns': sum(count - 1 for key, count in ran.items() if not key.startswith('cron:')),
        'conflicts_retried': {kind: sum(each['conflicts'][kind] for each in stats) for kind in ('claim', 'batch', 'task')},
        'counter': counter, 'counter_tasks': sum(key.endswith('0') for key in keys), 'task_failures': dict(failures),
        'workers_reporting': len(stats),
        'cron_fires': len(fires), 'cron_duplicate_effects': sum(count - 1 for count in fires.values()),
        'effects_per_node': per_node,
    }


def long_task(cluster, seconds=5.0, lease=0.5):
    """A task running `seconds` (ten leases by default) with a worker on every node, each polling
    every 50 ms: on Galera no node sees another's row locks, so only the lease, renewed while the
    task runs, keeps the other nodes' workers from claiming it. Returns how many times its Python
    ran, its committed effects, whether `queue_stats` counted it RUNNING at every look while it
    ran, and the conflicts the workers retried."""
    import threading
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import mqueue
    registry = mqueue.Registry(table='galera_long', cron_table='galera_long_cron')
    runs, finished = [], threading.Event()

    @registry.task(name='long')
    def long():
        context = mqueue.current()
        runs.append(context.worker.connect.description)
        time.sleep(seconds)
        with context.connection.cursor() as cursor:
            cursor.execute('INSERT INTO galera_long_ledger (task_id) VALUES (%s)', (context.id,))
        finished.set()

    conn = cluster.connect(0, 'test')
    with conn.cursor() as cursor:
        for table in ('galera_long_ledger', registry.table, registry.cron_table, registry.result_table,
                      registry.counts_table):
            cursor.execute(f'DROP TABLE IF EXISTS {table}')
        registry.create_tables(conn)
        cursor.execute('CREATE TABLE galera_long_ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, task_id BIGINT) '
                       'ENGINE=InnoDB')
    enqueuer = mqueue.connect_url(cluster.urls[0])()
    registry.enqueue(enqueuer, 'long', [])
    enqueuer.commit()
    enqueuer.close()
    workers = [mqueue.Worker(mqueue.connect_url(url), registry=registry, lease=lease, poll_interval=0.05, crons=False)
               for url in cluster.urls]
    threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    looks = []
    try:
        deadline = time.monotonic() + seconds * 4 + 30
        while not finished.is_set() and time.monotonic() < deadline:
            if runs:
                looks.append(sum(row.running for row in registry.queue_stats(conn)))
            time.sleep(0.25)
        time.sleep(lease * 3)   # (long enough for another node to claim it, were it due again)
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(seconds + 30)
    with conn.cursor() as cursor:
        cursor.execute('SELECT COUNT(*) FROM galera_long_ledger')
        effects, = cursor.fetchone()
        cursor.execute(f'SELECT COUNT(*) FROM {registry.table}')
        left, = cursor.fetchone()
        for table in ('galera_long_ledger', registry.table, registry.cron_table, registry.result_table,
                      registry.counts_table):
            cursor.execute(f'DROP TABLE IF EXISTS {table}')
    conn.close()
    return {'seconds': seconds, 'lease': lease, 'python_runs': len(runs), 'effects': effects, 'left': left,
            'looks': len(looks), 'running_at_every_look': bool(looks) and all(n == 1 for n in looks[:-1]),
            'conflicts_retried': sum(worker.stats['lock_conflicts'] for worker in workers),
            'cluster_mode': [worker._cluster for worker in workers]}


def main():
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--drain', type=int, metavar='TASKS', help='drain this many tasks, report, and stop')
    parser.add_argument('--workers', type=int, default=3, help='worker processes over the nodes, --drain (default 3)')
    parser.add_argument('--rounds', type=int, default=3, help='rounds of --drain, each on one node then on all (default 3)')
    parser.add_argument('--scenario', action='store_true', help="run issue 18's scenario, report, and stop "
                        '(exit status 1 on any duplicate effect or loss)')
    parser.add_argument('--tasks', type=int, default=6000, help='tasks of the scenario (default 6000)')
    parser.add_argument('--workers-per-node', type=int, default=2, help='worker processes per node (default 2)')
    parser.add_argument('--no-kill', action='store_true', help='no node is killed')
    parser.add_argument('--long', type=float, metavar='SECONDS', help='run one task this long with a lease a tenth '
                        'of it and a worker on every node, report, and stop')
    args = parser.parse_args()
    began = time.monotonic()
    with Cluster() as cluster:
        print(f'galera: {cluster.nodes} nodes synced in {time.monotonic() - began:.1f} s:', *cluster.urls, sep='\n  ')
        if args.drain:
            failed = False
            for _ in range(args.rounds):   # interleaved: every worker on one node, then spread over all
                for nodes in (1, cluster.nodes):
                    report = drain(cluster, args.drain, args.workers, nodes=nodes)
                    print('galera:', ', '.join(f'{key} {value}' for key, value in report.items()), flush=True)
                    failed = failed or bool(report['duplicate_effects'] or report['lost'])
            return 1 if failed else 0
        if args.long:
            report = long_task(cluster, args.long, args.long / 10)
            print('galera:', json.dumps(report))
            return 0 if report['python_runs'] == report['effects'] == 1 else 1
        if args.scenario:
            report = scenario(cluster, args.tasks, args.workers_per_node, kill=None if args.no_kill else 1)
            print('galera:', json.dumps(report, indent=2))
            return 1 if report['duplicate_effects'] or report['lost'] or report['cron_duplicate_effects'] else 0
        with contextlib.suppress(KeyboardInterrupt, EOFError):
            input('Enter stops them. ')
    print('galera: stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main())
