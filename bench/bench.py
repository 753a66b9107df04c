"""mqueue's benchmark: throughput and latency against raw pymysql floors and peer queues.

    pip install -e '.[bench]' && python bench/bench.py            # about 10 minutes
    python bench/bench.py --rounds 1 --tasks 5000 --no-peers        # a quick look

Everything runs interleaved, round after round, on this machine's MariaDB (127.0.0.1:3306, root,
database test; set MQUEUE_DATABASE_URL for another). Each line of the table gives the median and
the min-max over the rounds; the targets are ratios of medians from the same run, since the machine
is shared and noisy. The last line is the whole result as JSON.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time

import pymysql

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mqueue  # noqa: E402

URL = os.environ.get('MQUEUE_DATABASE_URL', 'mysql://root@127.0.0.1:3306/test')
connect = mqueue.connect_url(URL)
TABLE, CRON = 'bench_task', 'bench_cron'
BIG_TABLE, BIG_CRON = 'bench_big_task', 'bench_big_cron'
REGISTRY = mqueue.Registry(table=TABLE, cron_table=CRON)
BIG = mqueue.Registry(table=BIG_TABLE, cron_table=BIG_CRON)


def noop(*args):
    pass


for registry in (REGISTRY, BIG):
    registry.task(name='noop')(noop)


# Setup ###########################################################################################

def execute(sql, params=None, conn=None):
    own = conn is None
    conn = conn or connect()
    cursor = conn.cursor()
    cursor.execute(sql, params)
    rows = cursor.fetchall()
    conn.commit()
    if own:
        conn.close()
    return rows


def reset(registry=REGISTRY):
    conn = connect()
    execute(f'DROP TABLE IF EXISTS {registry.table}, {registry.cron_table}', conn=conn)
    registry.create_tables(conn)
    conn.close()


def fill(n, registry=REGISTRY):
    """n due no-op tasks, inserted fast (not timed)."""
    conn = connect()
    for start in range(0, n, 5000):
        registry.enqueue_many(conn, 'noop', [[] for _ in range(min(5000, n - start))])
    conn.commit()
    conn.close()


def remaining(registry=REGISTRY):
    return execute(f'SELECT COUNT(*) FROM {registry.table} WHERE dead_at IS NULL')[0][0]


def in_processes(target, workers, *args):
    """Run target(*args) in `workers` processes started together; returns the wall time."""
    ready = multiprocessing.Barrier(workers + 1)
    procs = [multiprocessing.Process(target=_gated, args=(ready, target, args)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait()
    began = time.perf_counter()
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f'{target.__name__} failed in a worker process')
    return time.perf_counter() - began


def _gated(ready, target, args):
    connections = target(*args, prepare=True) if getattr(target, 'prepares', False) else None
    ready.wait()
    target(*args, prepared=connections) if connections is not None else target(*args)


# Floors: hand-written pymysql ####################################################################

CLAIM = (f'SELECT id FROM {TABLE} FORCE INDEX (claim) WHERE queue = %s AND dead_at IS NULL '
         f'AND eta <= UTC_TIMESTAMP(6) ORDER BY priority, eta, id LIMIT %s FOR UPDATE SKIP LOCKED')


def floor_drain(rows_per_transaction, prepare=False, prepared=None):
    """The raw floor: claim rows, delete them, commit; nothing else."""
    if prepare:
        return [connect()]
    conn = prepared[0]
    cursor = conn.cursor()
    while True:
        cursor.execute(CLAIM, ('default', rows_per_transaction))
        ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            conn.commit()
            return
        cursor.execute(f'DELETE FROM {TABLE} WHERE id IN ({", ".join(["%s"] * len(ids))})', ids)
        conn.commit()


floor_drain.prepares = True


def same_sql_drain(batch, prepare=False, prepared=None):
    """mqueue's exact statements, per batch and per task, with no library code: claim and lease,
    commit; re-lock, a savepoint per task, the check, the delete, commit."""
    if prepare:
        conn = connect()
        cursor = conn.cursor()
        cursor.execute('SET SESSION wait_timeout = 31536000')   # as the worker does; isolation: the server's
        conn.commit()
        return [conn]
    conn = prepared[0]
    cursor = conn.cursor()
    claim = (f'SELECT id, name, args, retries, queue, eta, priority FROM {TABLE} FORCE INDEX (claim) '
             f'WHERE queue = %s AND dead_at IS NULL AND eta <= UTC_TIMESTAMP(6) '
             f'ORDER BY priority, eta, id LIMIT %s FOR UPDATE SKIP LOCKED')

    def claim_and_lease():
        while True:
            try:
                cursor.execute(claim, ('default', batch))
                ids = [row[0] for row in cursor.fetchall()]
                if ids:
                    cursor.execute(f'UPDATE {TABLE} SET retries = retries + 1, claimed_at = UTC_TIMESTAMP(6), '
                                   f'eta = UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND '
                                   f'WHERE id IN ({", ".join(["%s"] * len(ids))}) ORDER BY id LIMIT %s',
                                   [60_000_000, *ids, len(ids)])
                conn.commit()
                return ids
            except pymysql.err.OperationalError as exc:
                if exc.args[0] not in (1205, 1213):   # as mqueue does: a claim's lock conflict is retried
                    raise
                conn.rollback()
    while True:
        ids = claim_and_lease()
        if not ids:
            break
        marks = ', '.join(['%s'] * len(ids))
        cursor.execute(f'SELECT id, retries FROM {TABLE} WHERE id IN ({marks}) ORDER BY id LIMIT %s FOR UPDATE',
                       [*ids, len(ids)])
        cursor.fetchall()
        for index in range(len(ids)):
            cursor.execute(f'SAVEPOINT mqueue_{index}')
        cursor.execute('RELEASE SAVEPOINT mqueue_0')
        cursor.execute(f'DELETE FROM {TABLE} WHERE id IN ({marks}) ORDER BY id LIMIT %s', [*ids, len(ids)])
        conn.commit()


same_sql_drain.prepares = True


def commit_rate(rows, per_commit, write):
    """Rows written per second by ``write(conn, cursor)`` calls of ``per_commit`` rows, each
    followed by a commit, ``rows`` in all."""
    conn = connect()
    cursor = conn.cursor()
    began = time.perf_counter()
    for _ in range(rows // per_commit):
        write(conn, cursor)
        conn.commit()
    elapsed = time.perf_counter() - began
    conn.close()
    return rows / elapsed


def insert_commit(n):
    return commit_rate(n, 1, lambda conn, cursor: cursor.execute(
        f"INSERT INTO {TABLE} (args, eta, name, queue, retries, priority) VALUES "
        f"('[]', UTC_TIMESTAMP(6), 'noop', 'default', 0, 0)"))


def executemany_rows(n, rows=100):
    return commit_rate(n, rows, lambda conn, cursor: cursor.executemany(
        f'INSERT INTO {TABLE} (args, eta, name, queue, retries, priority) VALUES '
        f'(%s, UTC_TIMESTAMP(6), %s, %s, 0, 0)', [('[]', 'noop', 'default')] * rows))


# mqueue ##########################################################################################

def mqueue_enqueue(n):
    return commit_rate(n, 1, lambda conn, cursor: REGISTRY.enqueue(conn, 'noop', []))


def mqueue_enqueue_many(n, rows=1000):
    return commit_rate(n, rows, lambda conn, cursor: REGISTRY.enqueue_many(conn, 'noop', [[] for _ in range(rows)]))


def mqueue_drain(batch, threads=1, isolation=None, registry_name='main'):
    registry = REGISTRY if registry_name == 'main' else BIG
    mqueue.Worker(connect, registry=registry, batch=batch, concurrency=threads, crons=False,
                  isolation=isolation).run(burst=True)


def drain_rate(target, n, workers, *args, registry=REGISTRY):
    reset(registry)
    fill(n, registry)
    elapsed = in_processes(target, workers, *args)
    left = remaining(registry)
    if left:
        raise RuntimeError(f'{left} tasks left undrained')
    return n / elapsed


def latency(rate=200.0, seconds=5.0, poll=0.01):
    """Enqueue-to-start latency at a steady rate, one worker process polling every `poll` s."""
    reset()
    registry = mqueue.Registry(table=TABLE, cron_table=CRON)
    started = multiprocessing.Queue()

    def record(sent):
        started.put(time.time() - sent)
    registry.task(name='stamp')(record)
    stop = multiprocessing.Event()

    def serve():
        w = mqueue.Worker(connect, registry=registry, poll_interval=poll, crons=False)
        threading.Thread(target=lambda: (stop.wait(), w.stop()), daemon=True).start()
        w.run()
    proc = multiprocessing.Process(target=serve)
    proc.start()
    time.sleep(0.5)   # the worker is up and idle
    conn = connect()
    n = int(rate * seconds)
    began = time.perf_counter()
    for i in range(n):
        registry.enqueue(conn, 'stamp', [time.time()])
        conn.commit()
        pause = began + (i + 1) / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    conn.close()
    waits = sorted(started.get(timeout=30) for _ in range(n))
    stop.set()
    proc.join(10)
    return {'p50_ms': waits[len(waits) // 2] * 1000, 'p99_ms': waits[int(len(waits) * 0.99)] * 1000}


def idle_queries_per_poll(poll=0.05, seconds=2.0):
    """Statements an idle worker sends per poll interval, counted at the driver in its process."""
    reset()
    out = multiprocessing.Queue()

    def serve():
        sent = [0]
        send = pymysql.connections.Connection._execute_command

        def counting(self, command, sql):
            sent[0] += 1
            return send(self, command, sql)
        pymysql.connections.Connection._execute_command = counting
        w = mqueue.Worker(connect, registry=REGISTRY, poll_interval=poll, crons=False)

        def measure():
            time.sleep(1.0)             # past start-up and the first, empty claim
            before = sent[0]
            time.sleep(seconds)
            out.put(sent[0] - before)
            w.stop()
        threading.Thread(target=measure, daemon=True).start()
        w.run()
    proc = multiprocessing.Process(target=serve)
    proc.start()
    statements = out.get(timeout=60)
    proc.join(10)
    return statements / (seconds / poll)


def scale(n_idle, n, batch, workers=2):
    """Drain rate with n_idle rows that are not due (half far ahead, half dead) in the table, and
    the claim's plan."""
    reset(BIG)
    conn = connect()
    cursor = conn.cursor()
    cursor.execute(f"INSERT INTO {BIG_TABLE} (args, eta, name, queue, retries, priority, dead_at) "
                   f"SELECT '[]', UTC_TIMESTAMP(6) + INTERVAL 30 DAY, 'noop', 'default', 0, 0, "
                   f"IF(seq % 2, UTC_TIMESTAMP(6), NULL) FROM seq_1_to_{n_idle}")
    conn.commit()
    cursor.execute(f'ANALYZE TABLE {BIG_TABLE}')
    cursor.fetchall()
    cursor.execute('EXPLAIN ' + BIG.sql(mqueue.SQL_CLAIM, mqueue.DIALECTS['mysql']), ('default', 0, batch))
    plan = cursor.fetchall()[0]
    conn.close()
    fill(n, BIG)
    elapsed = in_processes(mqueue_drain, workers, batch, 1, None, 'big')
    left = execute(f'SELECT COUNT(*) FROM {BIG_TABLE} WHERE dead_at IS NULL AND eta <= UTC_TIMESTAMP(6)')[0][0]
    if left:
        raise RuntimeError(f'{left} tasks left undrained')
    return n / elapsed, {'type': plan[3], 'key': plan[5], 'extra': plan[9]}


def memory_growth(n, batch):
    """RSS of one worker process after its first 10,000 tasks and after n."""
    reset()
    fill(n)
    out = multiprocessing.Queue()

    def serve():
        def rss():
            with open('/proc/self/status') as status:
                return next(int(line.split()[1]) for line in status if line.startswith('VmRSS')) / 1024
        registry = mqueue.Registry(table=TABLE, cron_table=CRON)
        done = [0]

        def count():
            done[0] += 1
            if done[0] == 10_000:
                out.put(rss())
        registry.task(name='noop')(count)
        mqueue.Worker(connect, registry=registry, batch=batch, crons=False).run(burst=True)
        out.put(rss())
    proc = multiprocessing.Process(target=serve)
    proc.start()
    first, last = out.get(timeout=600), out.get(timeout=600)
    proc.join()
    return last - first


# Peers ###########################################################################################

def peer_rate(name, n):
    import peers
    return peers.drain_rate(name, n)


# The run #########################################################################################

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--tasks', type=int, default=20_000, help='tasks per drain (default 20000)')
    parser.add_argument('--peer-tasks', type=int, default=5_000, help='tasks per peer drain (default 5000)')
    parser.add_argument('--batch', type=int, default=mqueue.DEFAULT_BATCH, help='mqueue batch size')
    parser.add_argument('--no-peers', action='store_true')
    parser.add_argument('--scale-rows', type=int, default=1_000_000)
    parser.add_argument('--memory-tasks', type=int, default=200_000)
    args = parser.parse_args(argv)
    n, batch = args.tasks, args.batch
    results: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}

    def measure(name, function, *fargs):
        try:
            value = function(*fargs)
        except Exception as exc:   # a peer that cannot run here: say why, go on
            skipped[name] = f'{type(exc).__name__}: {exc}'.splitlines()[0][:200]
            print(f'  {name}: skipped ({skipped[name]})', flush=True)
            return
        results.setdefault(name, []).append(value)
        print(f'  {name}: {value:,.0f}', flush=True)

    plan = [
        ('floor 1 row/txn', lambda: drain_rate(floor_drain, n, 1, 1)),
        ('floor 10 rows/txn', lambda: drain_rate(floor_drain, n, 1, 10)),
        ('floor INSERT+COMMIT', lambda: insert_commit(2000)),
        ('floor executemany 100', lambda: executemany_rows(20_000)),
        ('mqueue enqueue+COMMIT', lambda: mqueue_enqueue(2000)),
        ('mqueue enqueue_many 1000', lambda: mqueue_enqueue_many(20_000)),
    ]
    for w in (1, 2, 4):
        plan.append((f'same-SQL W={w}', lambda w=w: drain_rate(same_sql_drain, n, w, batch)))
        plan.append((f'mqueue W={w}', lambda w=w: drain_rate(mqueue_drain, n, w, batch)))
    plan.append(('mqueue 1 process x 4 threads', lambda: drain_rate(mqueue_drain, n, 1, batch, 4)))
    plan.append(('mqueue W=2 READ COMMITTED', lambda: drain_rate(mqueue_drain, n, 2, batch, 1, 'READ COMMITTED')))
    if not args.no_peers:
        import peers
        for peer in peers.PEERS:
            plan.append((f'peer {peer}', lambda peer=peer: peer_rate(peer, args.peer_tasks)))

    latencies, idle, scales, plans = [], [], [], []
    for round_ in range(args.rounds):
        print(f'round {round_ + 1} of {args.rounds}', flush=True)
        for name, function in plan:
            if name not in skipped:
                measure(name, function)
        latencies.append(latency())
        print(f'  latency at 200/s, poll 10 ms: {latencies[-1]}', flush=True)
        idle.append(idle_queries_per_poll())
        print(f'  idle statements per poll: {idle[-1]:.2f}', flush=True)
        rate, claim_plan = scale(args.scale_rows, n, batch)
        scales.append(rate)
        plans.append(claim_plan)
        print(f'  mqueue W=2 beside {args.scale_rows:,} idle rows: {rate:,.0f} ({claim_plan})', flush=True)
    memory = memory_growth(args.memory_tasks, batch)
    print(f'memory growth over {args.memory_tasks:,} tasks: {memory:.1f} MB', flush=True)
    reset()
    reset(BIG)
    execute(f'DROP TABLE IF EXISTS {TABLE}, {CRON}, {BIG_TABLE}, {BIG_CRON}')

    med = {name: statistics.median(values) for name, values in results.items()}
    results[f'mqueue W=2 beside {args.scale_rows:,} idle rows'] = scales
    med[f'mqueue W=2 beside {args.scale_rows:,} idle rows'] = statistics.median(scales)
    print()
    print(f'mqueue {mqueue.__version__} benchmark: {args.rounds} rounds, {n:,} no-op tasks per drain, batch {batch}, '
          f'MariaDB {execute("SELECT VERSION()")[0][0]}, {os.cpu_count()} cores')
    width = max(len(name) for name in results) + 2
    print(f'{"":{width}}{"median/s":>12}{"min":>12}{"max":>12}')
    for name, values in results.items():
        print(f'{name:{width}}{med[name]:>12,.0f}{min(values):>12,.0f}{max(values):>12,.0f}')
    for name, reason in skipped.items():
        print(f'{name:{width}}skipped: {reason}')

    p50 = statistics.median(l['p50_ms'] for l in latencies)
    p99 = statistics.median(l['p99_ms'] for l in latencies)
    idle_median = statistics.median(idle)
    targets = []

    def target(text, value, goal, ok):
        targets.append({'target': text, 'value': round(value, 2), 'goal': goal, 'met': bool(ok)})

    def ratio(a, b):
        return med[a] / med[b] if a in med and b in med else float('nan')
    for w in (2, 4):
        mq = f'mqueue W={w}'
        target(f'{mq} / floor 1 row/txn', ratio(mq, 'floor 1 row/txn'), '>= 3.0', ratio(mq, 'floor 1 row/txn') >= 3)
        target(f'{mq} / same-SQL W={w}', ratio(mq, f'same-SQL W={w}'), '>= 0.85', ratio(mq, f'same-SQL W={w}') >= 0.85)
        target(f'{mq} / huey-sqlite', ratio(mq, 'peer huey-sqlite'), '>= 1.0', ratio(mq, 'peer huey-sqlite') >= 1)
        for peer in ('celery-sqlalchemy', 'rq', 'procrastinate'):
            r = ratio(mq, f'peer {peer}')
            target(f'{mq} / {peer}', r, '>= 5.0', r >= 5)
    r = ratio('mqueue enqueue+COMMIT', 'floor INSERT+COMMIT')
    target('enqueue / INSERT+COMMIT', r, '>= 0.9', r >= 0.9)
    r = ratio('mqueue enqueue_many 1000', 'floor executemany 100')
    target('enqueue_many 1000 / executemany 100', r, '>= 0.8', r >= 0.8)
    target('latency p50 ms (200/s, poll 10 ms)', p50, '<= 7', p50 <= 7)
    target('latency p99 ms (200/s, poll 10 ms)', p99, '<= 14', p99 <= 14)
    target('idle statements per poll interval', idle_median, '<= 1', idle_median <= 1.05)
    r = ratio(f'mqueue W=2 beside {args.scale_rows:,} idle rows', 'mqueue W=2')
    target(f'W=2 with {args.scale_rows:,} idle rows / empty', r, '>= 0.8', r >= 0.8)
    claim_plan = plans[-1]
    by_index = claim_plan['type'] in ('range', 'ref') and claim_plan['key'] == 'claim' \
        and 'filesort' not in (claim_plan['extra'] or '')
    target(f"claim plan: {claim_plan['type']} on index {claim_plan['key']}, no filesort", float(by_index),
           'index range (ref/range), no filesort', by_index)
    target('worker RSS growth MB over 200k tasks', memory, '< 10', memory < 10)
    r = ratio('mqueue W=2 READ COMMITTED', 'mqueue W=2')
    print()
    print(f'READ COMMITTED / the server default (REPEATABLE READ) at W=2: {r:.2f}')
    for t in targets:
        print(f'{"met " if t["met"] else "MISSED"}  {t["target"]}: {t["value"]} (goal {t["goal"]})')
    print(json.dumps({'medians': med, 'min_max': {k: [min(v), max(v)] for k, v in results.items()},
                      'skipped': skipped, 'latency': latencies, 'idle_statements_per_poll': idle,
                      'claim_plan': claim_plan, 'memory_growth_mb': memory, 'targets': targets,
                      'batch': batch, 'rounds': args.rounds, 'tasks': n}))
    return 0 if all(t['met'] for t in targets) else 1


if __name__ == '__main__':
    multiprocessing.set_start_method('fork')
    sys.exit(main())
