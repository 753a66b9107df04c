"""Does the drain rate hold as the backlog grows? Two worker processes (batch 20) drain the same
number of no-op tasks from a queue holding a small and a large backlog of due tasks.

    python bench/backlog.py                                    # PostgreSQL on 127.0.0.1:5432
    python bench/backlog.py --db mysql://root@127.0.0.1:3306/test --backlogs 2000 60000 --rounds 3

The mqueue imported is the first on sys.path (this repository's unless PYTHONPATH says otherwise),
so the same script measures an older version. Each round makes a fresh table (dropped after), fills
it on the server, and times the drain of --tasks tasks from the moment both workers are connected.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import uuid

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import mqueue  # noqa: E402

FILL = {   # n tasks due, one a millisecond over the last minutes
    'postgresql': "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', (now() AT TIME ZONE 'UTC') "
                  "- INTERVAL '10 minutes' + g * INTERVAL '1 millisecond', 'noop', 'default', 0 "
                  "FROM generate_series(1, {n}) g",
    'mysql': "INSERT INTO {task} (args, eta, name, queue, priority) SELECT '[]', UTC_TIMESTAMP(6) - INTERVAL 10 MINUTE "
             "+ INTERVAL seq * 1000 MICROSECOND, 'noop', 'default', 0 FROM seq_1_to_{n}",
}
ANALYZE = {'postgresql': 'ANALYZE {task}', 'mysql': 'ANALYZE TABLE {task}'}


def noop():
    pass


def registry_for(table):
    registry = mqueue.Registry(table=table, cron_table=table + '_cron')
    registry.task(name='noop')(noop)
    return registry


def execute(url, *statements):
    conn = mqueue.connect_url(url)()
    mqueue._set_autocommit(conn, True)
    try:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)
            if cursor.description:
                cursor.fetchall()
        cursor.close()
    finally:
        conn.close()


def work(url, table, share, barrier, results):
    """One worker process: connect, wait for the other, then claim and run its share."""
    w = mqueue.Worker(mqueue.connect_url(url), ['default'], registry=registry_for(table), batch=20,
                      poll_interval=0.01)
    w._open()   # connected before the clock starts
    barrier.wait()
    started, done = time.perf_counter(), 0
    while done < share:
        done += w.run_once()
    results.put((done, time.perf_counter() - started))
    w._discard_connection()


def drain(url, dialect, backlog, tasks, workers=2):
    table = f'bench_backlog_{uuid.uuid4().hex[:8]}'
    registry = registry_for(table)
    conn = mqueue.connect_url(url)()
    mqueue._set_autocommit(conn, True)
    try:
        registry.create_tables(conn)
    finally:
        conn.close()
    try:
        execute(url, FILL[dialect].format(task=table, n=backlog), ANALYZE[dialect].format(task=table))
        context = multiprocessing.get_context('spawn')
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=work, args=(url, table, tasks // workers, barrier, results))
                     for _ in range(workers)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=600) for _ in processes]
        for process in processes:
            process.join()
        return sum(done for done, _ in outcomes) / max(seconds for _, seconds in outcomes)
    finally:
        execute(url, f'DROP TABLE IF EXISTS {table}', f'DROP TABLE IF EXISTS {table}_cron', f'DROP TABLE IF EXISTS {table}_result')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--db', default='postgresql://postgres@127.0.0.1:5432/test')
    parser.add_argument('--backlogs', type=int, nargs='+', default=[2000, 60000])
    parser.add_argument('--tasks', type=int, default=1600, help='tasks drained per measurement (<= each backlog)')
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    dialect = args.db.split(':')[0].split('+')[0]
    print(f'mqueue {mqueue.__version__} ({mqueue.__file__}), {dialect}: 2 workers, batch 20, '
          f'{args.tasks:,} no-op tasks drained, {args.rounds} rounds')
    rates = {backlog: [] for backlog in args.backlogs}
    for _ in range(args.rounds):
        for backlog in args.backlogs:   # interleaved, so drift on the machine hits both alike
            rates[backlog].append(drain(args.db, dialect, backlog, min(args.tasks, backlog)))
    for backlog, values in rates.items():
        print(f'{backlog:>9,} waiting: {statistics.median(values):>8,.0f} tasks/s (min {min(values):,.0f}, '
              f'max {max(values):,.0f})')


if __name__ == '__main__':
    main()
