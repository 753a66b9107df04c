"""The 'oban' peer of bench/peers.py, in the Python 3.12 process it needs (oban-py requires 3.12).

    python3.12 bench/peer_oban.py CONNINFO N LIMIT TIMEOUT

bench/peers.py runs this with the interpreter MQUEUE_BENCH_PY312 names, after creating the empty
database CONNINFO names (and drops it afterwards). Here: install oban's schema, enqueue N no-op
jobs whose args are {"i": 0 .. N-1} (enqueue_many, 1,000 a call; not timed), then run one Oban
instance with one queue of limit LIMIT until N jobs have started or TIMEOUT seconds have passed,
stop it, and print one JSON object on stdout: "ran", the [i, time.perf_counter()] of every job
that started, in the order they started, and "timed_out". peers.py checks exactly-once and
computes the rate from these; nothing else is printed on stdout.

Needs: pip install oban 'psycopg[binary]' (in a 3.12 venv).
"""

import asyncio
import json
import logging
import sys
import time

from oban import Oban, job
from oban.schema import install

QUEUE = 'bench'
BATCH = 1000          # jobs per enqueue_many call

ran = []              # [i, perf_counter] of every job started


@job(queue=QUEUE)
def noop(i):
    ran.append([i, time.perf_counter()])


async def main(conninfo: str, n: int, limit: int, timeout: float) -> bool:
    pool = await Oban.create_pool(conninfo)
    try:
        await install(pool)
        oban = Oban(pool=pool, queues={QUEUE: limit})
        for start in range(0, n, BATCH):
            await oban.enqueue_many(noop.new(i) for i in range(start, min(start + BATCH, n)))
        # As bench/peers.py does for procrastinate and pgqueuer: the statistics autovacuum would
        # gather on a live system, so that the planner's picks do not depend on when it runs.
        async with pool.connection() as conn:
            await conn.execute('ANALYZE')
        deadline = time.perf_counter() + timeout
        await oban.start()
        try:
            while len(ran) < n and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
        finally:
            await oban.stop()
        return len(ran) < n
    finally:
        await pool.close()


if __name__ == '__main__':
    logging.getLogger('oban').setLevel(logging.ERROR)
    logging.getLogger('psycopg').setLevel(logging.ERROR)
    conninfo, n, limit, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    timed_out = asyncio.run(main(conninfo, n, limit, timeout))
    json.dump({'ran': ran, 'timed_out': timed_out}, sys.stdout)
