"""The dashboard's server time per page with 1,000,000 rows in the task table (issue 17's goal:
at most 300 ms each), on MariaDB, PostgreSQL and SQLite.

    python bench/dashboard.py [--rows 1000000] [--database mysql|postgresql|sqlite] [--repeat 5]

Each database gets a table of its own, filled in SQL: 80% scheduled for later, 10% ready, 9% dead
(each with an error), 1% running, over four queues and ten task names; then each page is asked for
`--repeat` times through the WSGI interface (no HTTP, no browser: the server's own time), and the
median and the worst are printed. Tables are dropped after.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mqueue       # noqa: E402
import mqueue_web   # noqa: E402

URLS = {'mysql': 'mysql://root@127.0.0.1:3306/test', 'postgresql': 'postgresql://postgres@127.0.0.1:5432/test',
        'sqlite': f'sqlite:///{tempfile.gettempdir()}/mqueue-bench-dashboard.db'}
GOAL_MS = 300

# Four slices of the table, by share; {rows} is each slice's size. Every row: one of four queues,
# one of ten names.
SLICES = [(0.80, 'scheduled'), (0.10, 'ready'), (0.09, 'dead'), (0.01, 'running')]
COLUMNS = '(args, eta, name, queue, priority, retries, enqueued_at, dead_at, claimed_at, worker, last_error)'
VALUES = {
    'scheduled': ("'[1]'", '+{n} seconds', None, None, None, 'NULL'),
    'ready': ("'[1]'", '-{n} milliseconds', None, None, None, 'NULL'),
    'dead': ("'[1]'", '-1 days', '-{n} seconds', None, None, "'ValueError: mailbox does not exist\nTraceback ...'"),
    'running': ("'[1]'", '+60 seconds', None, '-{n} milliseconds', "'web1:42:w0'", 'NULL'),
}


def fill_statement(dialect: str, table: str, kind: str, rows: int) -> str:
    args, eta, dead, claimed, worker, error = VALUES[kind]

    def at(shift):
        if shift is None:
            return 'NULL'
        amount, unit = shift.split(' ')
        if dialect == 'sqlite':   # (its modifiers know seconds, not milliseconds)
            amount, unit = (f'({amount}) / 1000.0', 'seconds') if unit == 'milliseconds' else (amount, unit)
            return f"strftime('%Y-%m-%d %H:%M:%f', 'now', ({amount.replace('{n}', 'n')}) || ' {unit}')"
        unit = {'seconds': 'second', 'milliseconds': 'millisecond', 'days': 'day'}[unit]
        if dialect == 'postgresql':
            return f"(now() AT TIME ZONE 'UTC') + ({amount.replace('{n}', 'g')}) * INTERVAL '1 {unit}'"
        unit = 'MICROSECOND' if unit == 'millisecond' else unit.upper()
        number = amount.replace('{n}', 'seq') + (' * 1000' if unit == 'MICROSECOND' else '')
        return f'UTC_TIMESTAMP(6) + INTERVAL ({number}) {unit}'
    n = {'sqlite': 'n', 'postgresql': 'g', 'mysql': 'seq'}[dialect]
    select = (f"SELECT {args}, {at(eta)}, 'job.' || ({n} % 10), 'q' || ({n} % 4), 0, "
              f"{'1' if kind != 'scheduled' else '0'}, {at('-1 days')}, {at(dead)}, {at(claimed)}, {worker or 'NULL'}, {error}")
    if dialect == 'mysql':
        select = select.replace(f"'job.' || ({n} % 10)", f"CONCAT('job.', {n} % 10)").replace(
            f"'q' || ({n} % 4)", f"CONCAT('q', {n} % 4)")
        return f'INSERT INTO {table} {COLUMNS} {select} FROM seq_1_to_{rows}'
    if dialect == 'postgresql':
        return f'INSERT INTO {table} {COLUMNS} {select} FROM generate_series(1, {rows}) g'
    return (f'WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows}) '
            f'INSERT INTO {table} {COLUMNS} {select} FROM g')


def measure(dialect: str, rows: int, repeat: int) -> list[tuple[str, float, float]]:
    connect = mqueue.connect_url(URLS[dialect])
    suffix = uuid.uuid4().hex[:8]
    registry = mqueue.Registry(table=f'bench_web_{suffix}', cron_table=f'bench_webc_{suffix}')
    conn = connect()
    registry.create_tables(conn)
    conn.commit()
    try:
        began = time.monotonic()
        cursor = conn.cursor()
        for share, kind in SLICES:
            cursor.execute(fill_statement(dialect, registry.table, kind, int(rows * share)))
            conn.commit()
        cursor.execute({'mysql': f'ANALYZE TABLE {registry.table}', 'postgresql': f'ANALYZE {registry.table}',
                        'sqlite': 'ANALYZE'}[dialect])
        if dialect == 'mysql':
            cursor.fetchall()
        conn.commit()
        cursor.execute(f'SELECT COUNT(*), MIN(id) FROM {registry.table} WHERE dead_at IS NOT NULL')
        dead_count, a_dead_id = cursor.fetchone()
        conn.commit()
        print(f'{dialect}: {rows:,} rows filled in {time.monotonic() - began:.0f} s ({dead_count:,} dead)', flush=True)
        dashboard = mqueue_web.Dashboard(connect, registry)
        first_page = registry.dead_tasks(conn, limit=mqueue_web.PAGE_SIZE)
        conn.commit()
        last = first_page[-1]
        pages = ['/', '/dead', '/dead?queue=q1', '/dead?name=job.3', '/dead?queue=q2&name=job.6',
                 '/dead?' + urlencode({'before': f'{last.dead_at.isoformat()},{last.id}'}), f'/task/{a_dead_id}', '/scheduled',
                 '/scheduled?queue=q3', '/running', '/crons']
        results = []
        for page in pages:
            times = [serve_once(dashboard, page) for _ in range(repeat)]
            results.append((page, statistics.median(times), max(times)))
        return results
    finally:
        cursor = conn.cursor()
        for table in (registry.table, registry.cron_table, registry.result_table, registry.counts_table):
            cursor.execute(f'DROP TABLE IF EXISTS {table}')
        conn.commit()
        conn.close()


def serve_once(dashboard: mqueue_web.Dashboard, page: str) -> float:
    """Milliseconds the dashboard took to answer one GET (its whole WSGI call)."""
    import io
    from wsgiref.util import setup_testing_defaults
    path, _, query = page.partition('?')
    environ = {'REQUEST_METHOD': 'GET', 'PATH_INFO': path, 'QUERY_STRING': query, 'wsgi.input': io.BytesIO()}
    setup_testing_defaults(environ)
    status = []
    began = time.perf_counter()
    b''.join(dashboard(environ, lambda code, headers: status.append(code)))
    elapsed = (time.perf_counter() - began) * 1000
    assert status[0].startswith('200'), (page, status)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rows', type=int, default=1_000_000)
    parser.add_argument('--database', choices=list(URLS), action='append')
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    if os.path.exists(URLS['sqlite'][len('sqlite:///'):]):
        os.remove(URLS['sqlite'][len('sqlite:///'):])
    worst = {}
    for dialect in args.database or list(URLS):
        results = measure(dialect, args.rows, args.repeat)
        print(f'  {"page":<48} {"median ms":>10} {"worst ms":>10}')
        for page, median, high in results:
            print(f'  {page[:48]:<48} {median:>10.1f} {high:>10.1f}{"  over the goal" if median > GOAL_MS else ""}')
        worst[dialect] = max(results, key=lambda result: result[1])
    print(f'\ngoal: the median of every page <= {GOAL_MS} ms at {args.rows:,} rows')
    for dialect, (page, median, _) in worst.items():
        print(f'  {dialect}: slowest {page} {median:.1f} ms: {"met" if median <= GOAL_MS else "MISSED"}')


if __name__ == '__main__':
    main()
