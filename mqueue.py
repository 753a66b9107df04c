"""mqueue: a task queue that lives in your own database: MySQL/MariaDB, PostgreSQL or SQLite.

Tasks are rows. ``enqueue`` inserts one inside *your* transaction, so a task exists only if your
business data commits with it; a worker runs each task inside the transaction that deletes its
row, so the task's own writes commit exactly when it completes::

    import sqlite3
    import mqueue

    @mqueue.task(retries=5)
    def mail(to, subject):
        conn = mqueue.current().connection             # the worker's transaction: never commit it
        conn.execute('INSERT INTO outbox (address, subject) VALUES (?, ?)', (to, subject))

    db = sqlite3.connect('app.db')                     # or a pymysql / psycopg connection
    mqueue.default_registry.create_tables(db)
    db.execute('CREATE TABLE IF NOT EXISTS outbox (address TEXT, subject TEXT)')
    mail.enqueue_with(connection=db, kwargs={'to': 'a@example.com', 'subject': 'hi'})
    db.commit()                                        # roll back instead, and the task never existed

    mqueue.Worker(mqueue.connect_url('sqlite:///app.db')).run(burst=True)   # or `mqueue worker`

Create the tables with ``python -m mqueue init-db --db URL`` (or ``schema --dialect ...``). One
file, no dependency beyond the DB-API driver you already use.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import contextvars
import datetime as dt
import functools
import hashlib
import importlib
import inspect
import itertools
import json
import logging
import math
import os
import pkgutil
import random
import re
import select
import signal
import socket
import sys
import threading
import time
import traceback
import zoneinfo
from typing import Any, Callable, Generator, Iterable, Iterator, Mapping, NamedTuple, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

__version__ = '0.4.0'
__all__ = ['task', 'cron', 'init', 'enqueue', 'enqueue_many', 'aenqueue', 'aenqueue_many', 'current', 'Worker',
           'connect_url', 'default_registry',
           'queue_stats', 'throughput', 'past_timeout', 'dead_tasks', 'scheduled_tasks', 'running_tasks', 'retry_dead',
           'delete_dead', 'run_now', 'cancel', 'purge_dead', 'result', 'wait_for_result',
           'purge_results', 'Registry', 'Task', 'TaskContext', 'QueueStats', 'DeadTask', 'ScheduledTask', 'RunningTask',
           'Result', 'Enqueued', 'PastTimeout', 'Throughput', 'MQueueError', 'NoConnectionError', 'NotInTaskError', 'TaskTimeout']

logger = logging.getLogger('mqueue')

# Defaults ########################################################################################

DEFAULT_QUEUE = 'default'
DEFAULT_TABLE = 'task'
DEFAULT_CRON_TABLE = 'cron'
DEFAULT_DATABASE_URL = 'sqlite:///mqueue.db'   # the CLI's database without --db or $MQUEUE_DATABASE_URL
DEFAULT_RETRIES = 3             # retries after the first attempt: 4 attempts in all
DEFAULT_BACKOFF = 5.0           # seconds before the first retry; doubles on each later retry
MAX_BACKOFF = 3600.0            # seconds: the cap on the delay before any one retry
MAX_RETRIES = 1000              # the retries column is a SMALLINT; keep far below its limit
DEFAULT_LEASE = 60.0            # seconds: how long a claim hides a task (where no rescue sees a dead worker's)
DEFAULT_RESCUE_AFTER = 2.0      # seconds after its claim that a task no worker holds (SQLite: whose worker's
                                # process has ended) is due again: its worker died or lost its connection
TIMEOUT_GRACE = 5.0             # seconds a task past its timeout has to return once its database session is ended;
                                # after that its worker gives it up, stops, and exits with an error
SQLITE_PROGRESS_STEPS = 1000    # SQLite: virtual machine steps between looks at whether a task has timed out (1% slower)
WATCHDOG_IDLE = 10.0            # seconds the thread that times tasks out lives on without one to time
RESCUE_EVERY = 1.0              # seconds between a busy worker's looks for such tasks (an idle one's probe looks)
LEASE_RENEW_AT = 1 / 3          # Galera: the running tasks' leases are renewed every lease times this
DEFAULT_POLL_INTERVAL = 0.5     # seconds an idle worker waits between claims (±10% jitter); on
                                # PostgreSQL a NOTIFY at enqueue's commit wakes it sooner
SQLITE_BUSY_TIMEOUT = 30.0      # seconds a SQLite connection opened by mqueue waits for the write lock
SQLITE_NORMAL = 1              # PRAGMA synchronous = NORMAL: in WAL mode, a commit that does not wait for the disk
DEFAULT_BATCH = 20              # tasks claimed and run per transaction (bench/: 20 drains about 2x
                                # faster than 1; more gains less and makes a slow task's batch-mates wait)
BATCH_SECONDS = 1.0             # seconds after which a batch starts no new task: quick tasks' commits
                                # must not wait on slow ones
PRIORITY_REFRESH = 1.0          # seconds between looks for priorities in use while busy (x5 while idle)
MAX_PRIORITIES = 32             # priorities in use in a queue up to which a claim tries each in turn; past
                                # that, a read first finds those with a due task (one statement more)
COUNTS_EVERY = 5.0              # seconds between a worker's writes of its throughput counts
COUNTS_KEPT = 7200              # seconds of throughput counts kept (the dashboard shows the last hour)
COUNTS_LOOK_AGAIN = 300.0       # seconds after which a worker looks again for a counts' table it lacked
ENDINGS_COUNTED = ('task_succeeded', 'task_failed', 'task_dead')   # the events the counts count: done, failed
EMPTY_RANGE_WAIT = 0.1          # seconds a (queue, priority) range a claim found empty is tried after the
                                # others, only if they leave the batch short
ERROR_BACKOFF_MIN = 0.25        # seconds: first wait after a database error; doubles per error
ERROR_BACKOFF_MAX = 30.0        # seconds: cap on that wait
NAME_MAX = 128                  # characters in task.name (the original package's width)
UNIQUE_MAX = 255                # characters in task.unique_key
QUEUE_MAX = 32                  # characters in task.queue
ARGS_MAX_BYTES = 16_777_215     # bytes in task.args, a MEDIUMTEXT
ERROR_MAX = 8000                # characters of an error (type, message, traceback) kept in last_error
ERRORS_KEPT = 10                # failed attempts whose errors a task keeps (in task.errors): the last ones
RESULT_SUFFIX = '_result'       # the results table is the task table's name with this after it
COUNTS_SUFFIX = '_counts'       # and the throughput counts' table's, with this
DEFAULT_RESULT_KEEP = 86400.0   # seconds a result is kept with @task(result=True)
RESULTS_PURGE_EVERY = 60.0      # seconds between a worker's deletions of expired results...
RESULTS_PURGE_MAX = 500         # ...of at most this many (mqueue purge --results deletes them all)
PRIORITY_RANGE = (-32768, 32767)  # a SMALLINT; smaller runs first
MAX_SECONDS = 1e10              # seconds (317 years): the longest delay, age, lease or interval accepted
HOOKS = ('transaction', 'around_task', 'task_started', 'task_succeeded', 'task_failed', 'task_dead')

# SQL #############################################################################################
# Every statement the library issues, by name, written once for all databases. ``{task}``,
# ``{cron}`` and ``{result}`` are table names, checked by _identifier() before they are formatted in; ``{ids}`` is a
# list of placeholders; the other ``{...}`` are the dialect's fragments (the Dialects below); every
# value is a driver parameter. All times are UTC and come from the database's clock, so workers
# with skewed clocks agree on what is due.

# Insert tasks (the row repeated for several); eta is either given (UTC) or the database's now plus a
# delay. PostgreSQL (which takes several as an array, below: here one row) returns the id and has
# idle workers notified at commit.
SQL_ENQUEUE = ('INSERT INTO {task} (args, eta, name, queue, retries, priority, enqueued_at) '
               'VALUES {rows}{enqueue_returning}')
SQL_ENQUEUE_ROW = '(%s, COALESCE(%s, {later}), %s, %s, 0, %s, {now})'
# One task due at once (no eta, no delay: most are): its row without the due time's parameters and
# COALESCE, which cost MariaDB 14 of an enqueue's 386 us.
SQL_ENQUEUE_NOW = ('INSERT INTO {task} (args, eta, name, queue, retries, priority, enqueued_at) '
                   'VALUES (%s, {now}, %s, %s, 0, %s, {now}){enqueue_returning}')
# Many tasks of one name where the dialect takes arrays (PostgreSQL): their args as one array,
# unnested in order, instead of a VALUES row each. psycopg parses a statement's placeholders in
# Python, anew for every long statement: 60 of the 85 ms that 1,000 VALUES rows took.
SQL_ENQUEUE_ARRAY = ('{enqueue_head}INSERT INTO {task} (args, eta, name, queue, retries, priority, enqueued_at) '
                     'SELECT args, COALESCE(%s, {later}), %s, %s, 0, %s, {now} '
                     'FROM unnest(%s::text[]) WITH ORDINALITY AS calls (args, n) ORDER BY n{enqueue_tail}')
# A task with a unique key: inserted unless a task holds the key. MySQL's IGNORE and the others'
# ON CONFLICT DO NOTHING insert nothing then, without an error that would end the caller's
# transaction; the unique index decides, so there is no read-then-insert race (a key another
# transaction is inserting makes this one wait for its commit or rollback)...
SQL_ENQUEUE_UNIQUE = ('{enqueue_head}{insert_ignore} {task} (args, eta, name, queue, retries, priority, enqueued_at, '
                      'unique_key) VALUES (%s, COALESCE(%s, {later}), %s, %s, 0, %s, {now}, %s)'
                      '{on_conflict_ignore}{enqueue_tail}')
# ...and the task that holds it (a plain read, by the unique index); where the insert's duplicate
# check has share-locked the key already (MySQL), its latest version, which a REPEATABLE READ
# snapshot taken before it committed would not show.
SQL_KEY_HOLDER = 'SELECT id FROM {task} WHERE unique_key = %s'
SQL_KEY_HOLDER_LATEST = SQL_KEY_HOLDER + '{share_lock}'
ENQUEUE_MANY_ROWS = 1000        # rows per INSERT statement of enqueue_many
ENQUEUE_MANY_BYTES = 4_000_000  # bytes of args per INSERT statement (well inside max_allowed_packet)
IDS_PER_STATEMENT = 500         # ids per statement of retry_dead/purge_dead (SQLite < 3.32 takes 999 parameters)
# Lock the next due tasks of one queue and priority, skipping those another worker holds: within a
# priority the claim index is in (eta, id) order, so the range stops at the first task not yet due
# and nothing is sorted. (A range over all priorities could not stop there: it would read, and
# lock, every task scheduled for later.) MySQL forces the index: on a small table its optimizer
# would rather scan and sort.
# Several queues of one priority are one such block each, joined by UNION ALL where the database
# allows a locking read there (MySQL), else one statement each; priorities are claimed one by one
# (where a queue has more than MAX_PRIORITIES in use, only those SQL_DUE_PAIRS finds due).
SQL_CLAIM = ('SELECT id, name, args, retries, queue, eta, priority, errors FROM {task}{claim_index} '
             'WHERE queue = %s AND dead_at IS NULL AND priority = %s AND eta <= {now} '
             'ORDER BY eta, id LIMIT %s{skip_locked}')
SQL_CLAIM_ORDER = ' ORDER BY priority, eta, id LIMIT %s'
# The priorities in use in a queue, one index dive each: the next one above a given priority. All
# of them, however many: rows scheduled for later and claimed ones count too, and a worker that
# stopped at the smallest few would never claim from the others while those hold any row.
SQL_NEXT_PRIORITY = ('SELECT MIN(priority) FROM {task}{claim_index} '
                     'WHERE queue = %s AND dead_at IS NULL AND priority > %s')
# Where a queue has more than MAX_PRIORITIES priorities in use, trying each in turn would cost a
# claim statement per empty one: this plain read first finds the (queue, priority) pairs that hold
# a due task, a block per pair joined by UNION ALL, PROBE_BLOCKS to a statement. A block is the
# pair's first due task in eta order from the claim index, as SQL_PROBE reads it, and says which
# pair it is (the first parameter: its place in the list, not the row's queue, which a
# case-insensitive collation may spell otherwise). Unlike the probe's, it does not pass over claimed
# rows: one whose lease is over is due, and the claim takes it.
SQL_DUE_PAIRS = ('SELECT %s AS pair FROM {task}{claim_index} '
                 'WHERE queue = %s AND dead_at IS NULL AND priority = %s AND eta <= {now} ORDER BY eta LIMIT 1')
PROBE_BLOCKS = 100              # (queue, priority) blocks per statement of that read and of the idle probe
                                # (SQLite allows 500 terms in a compound SELECT, and before 3.32 999 parameters)
# Count the attempt, hide the tasks for the lease, say which worker runs them, and by when the
# attempt must have ended if the task has a timeout (the second parameter; NULL without: one
# statement per timeout in the batch); committed before any task runs.
SQL_LEASE = ('UPDATE {task} SET retries = retries + 1, eta = {later}, claimed_at = {now}, '
             'started_at = COALESCE(started_at, {now}), deadline = {later}, worker = %s WHERE id IN ({ids}){id_limit}')
# Claimed tasks read for the transaction they run in; retries shows whether the claim is ours, and
# the flag that it is still claimed (not rescued since, nor buried). (By primary key: as a
# condition, the flag would lead planners to the claimed index.) Locked, as SQL_LOCK, except on a
# Galera cluster (its row locks would be local to its node, and would hold up the lease's renewal
# below: the lease is what fences the other nodes; it locks them just before its commit).
SQL_CHECK_CLAIMS = ('SELECT id, retries, claimed_at IS NOT NULL AND dead_at IS NULL FROM {task} WHERE id IN ({ids})'
                    '{id_limit}')
SQL_LOCK = SQL_CHECK_CLAIMS + '{for_update}'
# Galera: the running batches' leases moved ahead, from a connection of their worker's own, while
# their tasks run; only rows still claimed by that worker thread (by primary key).
SQL_RENEW = 'UPDATE {task} SET eta = {later} WHERE id IN ({ids}) AND worker = %s AND dead_at IS NULL{id_limit}'
# A task finished: its row goes in the same commit as the task's writes.
SQL_COMPLETE = 'DELETE FROM {task} WHERE id IN ({ids}){id_limit}'
# A failed attempt: due again after the back-off, with the error kept (and added to the errors).
SQL_RETRY = ('UPDATE {task} SET eta = {later}, claimed_at = NULL, worker = NULL, last_error = %s, errors = %s '
             'WHERE id = %s')
# A task that gave up: kept, never claimed again, until brought back; its unique key let go unless
# its task says to keep it (the parameter 1).
SQL_BURY = ('UPDATE {task} SET dead_at = {now}, claimed_at = NULL, worker = NULL, last_error = %s, errors = %s, '
            'unique_key = CASE WHEN %s = 1 THEN unique_key END WHERE id = %s')
# Hand back a claimed task that did not run (shutdown, a lost batch): uncounted, due at once.
SQL_RELEASE = ('UPDATE {task} SET retries = retries - 1, eta = {now}, claimed_at = NULL, worker = NULL '
               'WHERE id = %s AND retries = %s AND dead_at IS NULL')
# Rescue: a claimed task whose row no transaction holds was left by a worker that died or lost its
# connection (a running batch holds its rows' locks from just after its claim until its commit).
# Candidates are the rows claimed more than rescue_after ago (a batch locks its rows a moment after
# its claim commits), read from the claimed index, which holds the claimed rows alone (PostgreSQL;
# MySQL's has the others as NULLs, before them), in every queue: a plain read, which locks nothing...
SQL_RESCUE_FIND = ('SELECT id FROM {task}{claimed_index} WHERE claimed_at < {later} AND dead_at IS NULL '
                   'ORDER BY claimed_at LIMIT %s')
RESCUE_MAX = 100                # candidates per look (the running batches' long tasks among them)
# ...those of them that SKIP LOCKED can lock (by primary key), still claimed that long ago (the
# flag), are orphans (SQLite, which has no row locks: those whose worker's process has ended)...
SQL_RESCUE_LOCK = ('SELECT id, name, queue, retries, eta, claimed_at, worker, claimed_at < {later} AND dead_at IS NULL '
                   'FROM {task} WHERE id IN ({ids}){id_limit}{skip_locked}')
# ...and are due at once, the attempt counted (a task that kills its worker every time ends dead).
SQL_RESCUE = 'UPDATE {task} SET eta = {now}, claimed_at = NULL, worker = NULL WHERE id IN ({ids}){id_limit}'
# Results: the tasks of a batch that keep one write them in the commit that ends them (the one that
# deletes their rows, or buries them), from their rows (times, attempts, errors) joined by primary
# key to what they returned and how long to keep it ({kept}: a row of id, value, keep per task),
# one statement for the batch. The rows are read in that order, by primary key (MySQL's
# STRAIGHT_JOIN and FORCE INDEX say so: at REPEATABLE READ an INSERT ... SELECT locks every row it
# reads, and a scan of the task table would wait on, and deadlock with, other workers' rows). A
# result left by an earlier end is replaced where the database can do so without gap locks (none is
# left unless task ids were reused: retry_dead deletes a revived task's). PostgreSQL NOTIFYs
# waiters at the commit.
SQL_KEEP_RESULTS = ('{result_head}{result_into} {result} (id, name, queue, status, value, errors, attempts, '
                    'enqueued_at, started_at, finished_at, expires_at) SELECT t.id, t.name, t.queue, %s, kept.value, '
                    't.errors, t.retries, t.enqueued_at, t.started_at, {now}, {kept_expiry} '
                    'FROM ({kept}) AS kept {kept_join} {task} AS t{primary_index} ON t.id = kept.id{result_tail}')
SQL_KEPT_FIRST, SQL_KEPT_NEXT = 'SELECT %s AS id, %s AS value, %s AS keep', ' UNION ALL SELECT %s, %s, %s'
# What result() reads: the task's row while it is pending, running or dead (by primary key)...
SQL_TASK_STATE = ('SELECT dead_at, claimed_at, retries, enqueued_at, started_at, errors, last_error, name, args '
                  'FROM {task} WHERE id = %s')
# ...else its result, if it kept one (by primary key).
SQL_RESULT = ('SELECT status, value, errors, attempts, enqueued_at, started_at, finished_at, name FROM {result} '
              'WHERE id = %s')
# Expired results, oldest first, from the expires index...
SQL_FIND_EXPIRED = 'SELECT id FROM {result} WHERE expires_at < {now} ORDER BY expires_at LIMIT %s'
# ...deleted by primary key; and so is the result of a dead task brought back (pending again).
SQL_DELETE_RESULTS = 'DELETE FROM {result} WHERE id IN ({ids}){id_limit}'
# Operating: statistics and the dead are plain reads (no locks: running tasks never make them
# wait, nor they a worker); writes go by primary key to rows first locked with SKIP LOCKED, so a
# row a worker holds is passed over, never waited for. Filters by queue or name are appended as
# ' AND column = %s'.
# Find dead tasks...
SQL_FIND = 'SELECT id FROM {task}'
SQL_FIND_DEAD = SQL_FIND + ' WHERE dead_at IS NOT NULL'
# ...bring them back: a fresh count of attempts, due at once...
SQL_RETRY_DEAD = ('UPDATE {task} SET dead_at = NULL, retries = 0, eta = {now} '
                  'WHERE dead_at IS NOT NULL AND id IN ({ids}){id_limit}')
# ...or delete them.
SQL_FIND_DEAD_BEFORE = SQL_FIND_DEAD + ' AND dead_at < {later}'
SQL_PURGE_DEAD = 'DELETE FROM {task} WHERE dead_at IS NOT NULL AND id IN ({ids}){id_limit}'
# The dead among some ids, locked for one of those writes (a task retried and claimed meanwhile is
# skipped: dead no more, or held by its worker).
SQL_LOCK_DEAD = 'SELECT id FROM {task} WHERE dead_at IS NOT NULL AND id IN ({ids}){id_limit}{skip_locked}'
# The dead, newest first, with their last error.
SQL_DEAD_TASKS = 'SELECT id, queue, name, args, retries, dead_at, last_error FROM {task} WHERE dead_at IS NOT NULL'
SQL_DEAD_TASKS_ORDER = ' ORDER BY dead_at DESC, id DESC LIMIT %s'
SQL_DEAD_BEFORE = ' AND (dead_at < %s OR (dead_at = %s AND id < %s))'   # the next page: after its last row
# Waiting for a later time (delayed, or waiting to retry), soonest first ("now" passed in); the
# next page after its last row. A block per (queue, priority) pair in use, each the claim index's
# range of the pair past now (or past the page's last row), in (eta, id) order, joined by UNION ALL
# and merged: no statement sorts a queue's waiting tasks (the claim index orders them by priority
# before eta). Claimed rows are read past (their lease is in eta). Past PROBE_BLOCKS pairs, one
# statement sorts them all.
SQL_SCHEDULED_PAIR = ('SELECT id, queue, name, args, retries, eta, last_error FROM {task}{claim_index} '
                      'WHERE queue = %s AND dead_at IS NULL AND priority = %s AND eta > %s AND claimed_at IS NULL')
SQL_SCHEDULED_TASKS = ('SELECT id, queue, name, args, retries, eta, last_error FROM {task} '
                       'WHERE dead_at IS NULL AND claimed_at IS NULL AND eta > %s')
SQL_SCHEDULED_AFTER = ' AND eta >= %s AND (eta > %s OR id > %s)'
SQL_SCHEDULED_ORDER = ' ORDER BY eta, id LIMIT %s'
# Running: claimed, the oldest claim first, from the claimed index.
SQL_RUNNING_TASKS = ('SELECT id, queue, name, worker, claimed_at, deadline, retries FROM {task}{claimed_index} '
                     'WHERE claimed_at IS NOT NULL AND {not_dead}')
SQL_RUNNING_ORDER = ' ORDER BY claimed_at, id LIMIT %s'
# Run waiting tasks now: lock those of some ids still waiting (a task claimed meanwhile is skipped:
# its worker holds it, or it is no longer waiting), then make them due.
SQL_LOCK_WAITING = ('SELECT id FROM {task} WHERE dead_at IS NULL AND claimed_at IS NULL AND eta > {now} '
                    'AND id IN ({ids}){id_limit}{skip_locked}')
SQL_RUN_NOW = 'UPDATE {task} SET eta = {now} WHERE dead_at IS NULL AND claimed_at IS NULL AND id IN ({ids}){id_limit}'
# Per queue: ready (due), scheduled (due later: delayed or waiting to retry), running (claimed: the
# attempt has not ended, however long past its lease; a dead worker's until a worker rescues it),
# dead, and the oldest ready task's due time; "now" is read once and passed in, so the four counts
# and the oldest task's wait are taken at one instant.
SQL_QUEUE_STATS = ('SELECT queue, COUNT(CASE WHEN dead_at IS NULL AND claimed_at IS NULL AND eta <= %s THEN 1 END), '
                   'COUNT(CASE WHEN dead_at IS NULL AND claimed_at IS NULL AND eta > %s THEN 1 END), '
                   'COUNT(CASE WHEN dead_at IS NULL AND claimed_at IS NOT NULL THEN 1 END), COUNT(dead_at), '
                   'MIN(CASE WHEN dead_at IS NULL AND claimed_at IS NULL AND eta <= %s THEN eta END) FROM {task}')
SQL_QUEUE_STATS_GROUP = ' GROUP BY queue ORDER BY queue'
# The same from index ranges, each count stopping at a cap (queue_stats(cap=...)), where the claim
# index holds the dead too (MySQL, SQLite): for tables too large to count in one scan. The queues
# with rows, one index dive each: a loose scan of the claim index, MySQL's own (DISTINCT on an
# index's first column), elsewhere step by step; PostgreSQL's claim index holds the rows not dead
# only, whose queues are all the scheduled list needs (its queue_stats counts in one scan)...
SQL_QUEUES_DISTINCT = 'SELECT DISTINCT queue FROM {task}{claim_index} ORDER BY queue'
SQL_QUEUES_STEPPED = ('WITH RECURSIVE queues (queue) AS (SELECT MIN(queue) FROM {task}{claim_index} UNION ALL '
                      'SELECT (SELECT MIN(queue) FROM {task}{claim_index} WHERE queue > queues.queue) FROM queues '
                      'WHERE queues.queue IS NOT NULL) SELECT queue FROM queues WHERE queue IS NOT NULL ORDER BY queue')
SQL_WAITING_QUEUES_STEPPED = ('WITH RECURSIVE queues (queue) AS (SELECT MIN(queue) FROM {task} WHERE dead_at IS NULL '
                              'UNION ALL SELECT (SELECT MIN(queue) FROM {task} WHERE dead_at IS NULL AND '
                              'queue > queues.queue) FROM queues WHERE queues.queue IS NOT NULL) '
                              'SELECT queue FROM queues WHERE queue IS NOT NULL ORDER BY queue')
# ...per queue and priority in use (SQL_NEXT_PRIORITY), the ready and the scheduled, up to the cap
# each (claimed rows, read past: their lease is in eta), and the oldest ready, from the claim index's
# range of the pair, in eta order ("now" passed in)...
SQL_COUNT_PAIR = ('SELECT (SELECT COUNT(*) FROM (SELECT 1 AS one FROM {task}{claim_index} WHERE queue = %s '
                  'AND dead_at IS NULL AND priority = %s AND eta <= %s AND claimed_at IS NULL LIMIT %s) AS ready), '
                  '(SELECT COUNT(*) FROM (SELECT 1 AS one FROM {task}{claim_index} WHERE queue = %s '
                  'AND dead_at IS NULL AND priority = %s AND eta > %s AND claimed_at IS NULL LIMIT %s) AS scheduled), '
                  '(SELECT eta FROM {task}{claim_index} WHERE queue = %s AND dead_at IS NULL AND priority = %s '
                  'AND eta <= %s AND claimed_at IS NULL ORDER BY eta LIMIT 1)')
# ...and per queue the running, from the claimed index, and the dead, from the claim index's range.
SQL_COUNT_QUEUE = ('SELECT (SELECT COUNT(*) FROM (SELECT 1 AS one FROM {task}{claimed_index} WHERE '
                   'claimed_at IS NOT NULL AND {not_dead} AND queue = %s LIMIT %s) AS running), '
                   '(SELECT COUNT(*) FROM (SELECT 1 AS one FROM {task}{claim_index} WHERE queue = %s '
                   'AND dead_at IS NOT NULL LIMIT %s) AS dead)')
# Running tasks past their timeout: still claimed after their deadline, which their worker could not
# enforce (it hangs, is paused, or died and its task awaits a rescue); from the claimed index, the
# longest overdue first; "now" as above.
SQL_PAST_TIMEOUT = ('SELECT id, queue, name, worker, claimed_at, deadline FROM {task}{claimed_index} '
                    'WHERE claimed_at IS NOT NULL AND {not_dead} AND deadline < %s')
SQL_PAST_TIMEOUT_ORDER = ' ORDER BY deadline LIMIT %s'
# Throughput: a worker adds the tasks it saw end in a minute of a queue (every COUNTS_EVERY seconds,
# in a transaction of its own: the primary key's row, or a new one), and deletes the minutes past
# COUNTS_KEPT (a row a queue and minute: a scan of a small table)...
SQL_COUNT_ENDED = ('INSERT INTO {counts}{counts_alias} (queue, minute, done, failed) VALUES (%s, %s, %s, %s)'
                   '{counts_upsert}')
SQL_PURGE_COUNTS = 'DELETE FROM {counts} WHERE minute < %s'
# ...and the dashboard reads the minutes since a given one (a scan of that small table).
SQL_THROUGHPUT = 'SELECT minute, SUM(done), SUM(failed) FROM {counts} WHERE minute >= %s'
SQL_THROUGHPUT_GROUP = ' GROUP BY minute'
# Cancel a task no worker is running (pending or dead): look (a plain read), lock its row unless a
# worker holds it, delete it. (A plain DELETE would wait for a running task to commit; and the look
# first keeps a claimed row from being locked, and kept locked, by a cancel that declines it.)
SQL_NOT_RUNNING = 'id = %s AND (dead_at IS NOT NULL OR claimed_at IS NULL OR eta <= {now})'
SQL_CANCEL_FIND = SQL_FIND + ' WHERE ' + SQL_NOT_RUNNING
SQL_CANCEL_LOCK = SQL_CANCEL_FIND + '{skip_locked}'
SQL_CANCEL = 'DELETE FROM {task} WHERE ' + SQL_NOT_RUNNING
# Lock a cron's row to schedule it; a worker that finds it locked skips it rather than wait.
SQL_CRON_LOCK = 'SELECT last, {now}, task_id FROM {cron} WHERE queue = %s AND name = %s{skip_locked}'
# The database's now, and whether the cron's row exists (it does if SQL_CRON_LOCK skipped it).
SQL_CRON_PROBE = 'SELECT {now}, COUNT(*) FROM {cron} WHERE queue = %s AND name = %s'
# A cron's first row: fires after now are its to enqueue. Ignored if another worker raced us.
SQL_CRON_CREATE = '{insert_ignore} {cron} (queue, name, last) VALUES (%s, %s, %s){on_conflict_ignore}'
# Whether a cron's previous task is still pending (queued, retrying or running, not dead).
SQL_CRON_PENDING = 'SELECT 1 FROM {task} WHERE id = %s AND dead_at IS NULL'
# Record the newest fire covered and the task enqueued for it.
SQL_CRON_ADVANCE = 'UPDATE {cron} SET last = %s, task_id = %s WHERE queue = %s AND name = %s'
# Every cron row of some queues, to report those no longer declared; and every one, to list them.
SQL_CRON_ROWS = 'SELECT queue, name, last FROM {cron} WHERE queue IN ({queues})'
SQL_CRON_ALL = 'SELECT queue, name, last FROM {cron}'
SQL_NOW = 'SELECT {now}'
# A savepoint around each task of a batch that touches its connection: a failure rolls back to
# its own. Releasing the first before the commit proves the transaction is still the one that holds
# the claims: it fails if a task's transaction was rolled back or committed under it.
SQL_SAVEPOINT = 'SAVEPOINT mqueue_{n}'
SQL_ROLLBACK_TO_SAVEPOINT = 'ROLLBACK TO SAVEPOINT mqueue_{n}'
SQL_RELEASE_SAVEPOINT = 'RELEASE SAVEPOINT mqueue_{n}'
# Whether a task is due, asked by an idle worker in autocommit mode: one statement per poll (a
# block per queue and priority, and one for a dead worker's tasks, joined by UNION ALL; past
# PROBE_BLOCKS pairs, one more per PROBE_BLOCKS until one finds a task), no transaction (and no
# metadata lock) left open between polls. A block is the first due task in eta order, so
# PostgreSQL reads it from the claim index too (for "any one" it may scan the table): a plain read,
# which passes over claimed rows where a rescue finds the dead worker's (the last parameter false),
# so that a task running past its lease never makes idle workers claim in vain...
SQL_PROBE = ('SELECT 1 AS due, NULL AS worker, 0 AS lease_over FROM {task}{claim_index} '
             'WHERE queue = %s AND dead_at IS NULL AND priority = %s '
             'AND eta <= {now} AND (claimed_at IS NULL OR %s) ORDER BY eta LIMIT 1')
# ...and a claim older than rescue_after that no transaction holds, from the claimed index: SKIP
# LOCKED passes over the running batches' rows (its locks last the statement): such a row says
# there is a task to rescue. (SQLite: the claims older than rescue_after, up to RESCUE_MAX, whose
# workers the worker looks up among this host's processes, and whether their lease is over.)
SQL_PROBE_ORPHAN = ('SELECT 0 AS due, worker, CASE WHEN eta <= {now} THEN 1 ELSE 0 END AS lease_over '
                    'FROM {task}{claimed_index} WHERE claimed_at < {later} AND dead_at IS NULL '
                    'ORDER BY claimed_at LIMIT %s{skip_locked}')
NOTIFY_CHANNEL = 'mqueue'       # PostgreSQL: enqueue notifies it (payload "table:queue"); idle workers listen
RESULT_CHANNEL = 'mqueue_result'   # PostgreSQL: a kept result notifies it (payload "table:id"); waiters listen
NOTIFY_WAIT_SLICE = 0.25        # seconds: an idle PostgreSQL worker looks at stop() at least this often

SCHEMA_MYSQL = """\
-- mqueue schema: MySQL 8.0.1+ or MariaDB 10.6+ (the worker claims with FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS {task} (
    id BIGINT NOT NULL AUTO_INCREMENT,
    args MEDIUMTEXT NOT NULL,              -- JSON: a list (positional) or an object (keyword arguments)
    eta DATETIME(6) NOT NULL,              -- UTC: due time, or while claimed the end of the lease
    name VARCHAR(128) NOT NULL,            -- the registered task name, e.g. tasks.mail
    queue VARCHAR(32) NOT NULL,
    retries SMALLINT NOT NULL DEFAULT 0,   -- attempts begun (counted when claimed)
    priority SMALLINT NOT NULL DEFAULT 0,  -- smaller runs first
    claimed_at DATETIME(6) NULL,           -- UTC: when a worker claimed the attempt now running; NULL once it ends
    dead_at DATETIME(6) NULL,              -- UTC: when the task gave up (dead: never claimed)
    last_error TEXT NULL,                  -- the last failure: type, message, traceback
    enqueued_at DATETIME(6) NULL,          -- UTC: when it was enqueued (NULL: before 0.4)
    started_at DATETIME(6) NULL,           -- UTC: when its first attempt was claimed
    deadline DATETIME(6) NULL,             -- UTC: when the attempt now running times out, if the task has a timeout
    worker VARCHAR(255) NULL,              -- who runs the attempt now running: host:pid:thread
    errors MEDIUMTEXT NULL,                -- JSON: the failed attempts' errors, oldest first (the last ERRORS_KEPT)
    unique_key VARCHAR(255) NULL,          -- while set, no other task has it: enqueue(unique=...)
    PRIMARY KEY (id),
    UNIQUE KEY unique_key (unique_key),
    KEY claim (queue, dead_at, priority, eta),
    KEY claimed (claimed_at)               -- a dead worker's tasks, found by their claim's age
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS {cron} (
    queue VARCHAR(32) NOT NULL,
    name VARCHAR(128) NOT NULL,
    last DATETIME(6) NOT NULL,             -- UTC: the newest fire already covered
    task_id BIGINT NULL,                   -- the task enqueued for it (no new one while it is pending)
    PRIMARY KEY (queue, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- What tasks that keep a result returned, or the errors they gave up with; written in the commit
-- that ends the task.
CREATE TABLE IF NOT EXISTS {result} (
    id BIGINT NOT NULL,                    -- the task's id
    name VARCHAR(128) NOT NULL,
    queue VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,           -- succeeded or dead
    value MEDIUMTEXT NULL,                 -- JSON: what it returned
    errors MEDIUMTEXT NULL,                -- JSON: its failed attempts' errors, oldest first
    attempts SMALLINT NOT NULL,
    enqueued_at DATETIME(6) NULL,          -- UTC, as on its task row
    started_at DATETIME(6) NULL,
    finished_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,       -- UTC: deleted after
    PRIMARY KEY (id),
    KEY expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Tasks ended per queue and minute, as the workers count them (the dashboard's throughput picture):
-- each worker adds what it counted every few seconds; rows older than two hours are deleted.
CREATE TABLE IF NOT EXISTS {counts} (
    queue VARCHAR(32) NOT NULL,
    minute DATETIME(6) NOT NULL,           -- UTC: the minute's start
    done INT NOT NULL DEFAULT 0,           -- tasks that succeeded
    failed INT NOT NULL DEFAULT 0,         -- attempts that failed (to be retried, or dead)
    PRIMARY KEY (queue, minute)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
"""

SCHEMA_POSTGRESQL = """\
-- mqueue schema: PostgreSQL 9.6+ (the worker claims with FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS {task} (
    id BIGSERIAL PRIMARY KEY,
    args TEXT NOT NULL,                    -- JSON: a list (positional) or an object (keyword arguments)
    eta TIMESTAMP(6) NOT NULL,             -- UTC: due time, or while claimed the end of the lease
    name VARCHAR(128) NOT NULL,            -- the registered task name, e.g. tasks.mail
    queue VARCHAR(32) NOT NULL,
    retries SMALLINT NOT NULL DEFAULT 0,   -- attempts begun (counted when claimed)
    priority SMALLINT NOT NULL DEFAULT 0,  -- smaller runs first
    claimed_at TIMESTAMP(6) NULL,          -- UTC: when a worker claimed the attempt now running; NULL once it ends
    dead_at TIMESTAMP(6) NULL,             -- UTC: when the task gave up (dead: never claimed)
    last_error TEXT NULL,                  -- the last failure: type, message, traceback
    enqueued_at TIMESTAMP(6) NULL,         -- UTC: when it was enqueued (NULL: before 0.4)
    started_at TIMESTAMP(6) NULL,          -- UTC: when its first attempt was claimed
    deadline TIMESTAMP(6) NULL,            -- UTC: when the attempt now running times out, if the task has a timeout
    worker VARCHAR(255) NULL,              -- who runs the attempt now running: host:pid:thread
    errors TEXT NULL,                      -- JSON: the failed attempts' errors, oldest first (the last ERRORS_KEPT)
    unique_key VARCHAR(255) NULL           -- while set, no other task has it: enqueue(unique=...)
);
-- The claim's order, the dead left out (InnoDB's and SQLite's indexes end with the id by themselves).
CREATE INDEX IF NOT EXISTS {task}_claim ON {task} (queue, priority, eta, id) WHERE dead_at IS NULL;
-- The claimed tasks alone: a dead worker's are found by their claim's age.
CREATE INDEX IF NOT EXISTS {task}_claimed ON {task} (claimed_at) WHERE claimed_at IS NOT NULL;
-- The keyed tasks alone (a task without a key costs it nothing).
CREATE UNIQUE INDEX IF NOT EXISTS {task}_unique ON {task} (unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS {cron} (
    queue VARCHAR(32) NOT NULL,
    name VARCHAR(128) NOT NULL,
    last TIMESTAMP(6) NOT NULL,            -- UTC: the newest fire already covered
    task_id BIGINT NULL,                   -- the task enqueued for it (no new one while it is pending)
    PRIMARY KEY (queue, name)
);

-- What tasks that keep a result returned, or the errors they gave up with; written in the commit
-- that ends the task.
CREATE TABLE IF NOT EXISTS {result} (
    id BIGINT PRIMARY KEY,                 -- the task's id
    name VARCHAR(128) NOT NULL,
    queue VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,           -- succeeded or dead
    value TEXT NULL,                       -- JSON: what it returned
    errors TEXT NULL,                      -- JSON: its failed attempts' errors, oldest first
    attempts SMALLINT NOT NULL,
    enqueued_at TIMESTAMP(6) NULL,         -- UTC, as on its task row
    started_at TIMESTAMP(6) NULL,
    finished_at TIMESTAMP(6) NOT NULL,
    expires_at TIMESTAMP(6) NOT NULL       -- UTC: deleted after
);
CREATE INDEX IF NOT EXISTS {result}_expires ON {result} (expires_at);

-- Tasks ended per queue and minute, as the workers count them (the dashboard's throughput picture):
-- each worker adds what it counted every few seconds; rows older than two hours are deleted.
CREATE TABLE IF NOT EXISTS {counts} (
    queue VARCHAR(32) NOT NULL,
    minute TIMESTAMP(6) NOT NULL,          -- UTC: the minute's start
    done INTEGER NOT NULL DEFAULT 0,       -- tasks that succeeded
    failed INTEGER NOT NULL DEFAULT 0,     -- attempts that failed (to be retried, or dead)
    PRIMARY KEY (queue, minute)
);
"""

SCHEMA_SQLITE = """\
-- mqueue schema: SQLite 3.24+ (one writer at a time: the worker claims under BEGIN IMMEDIATE).
-- WAL: readers (a web request's SELECTs) never wait for a running task, nor it for them.
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS {task} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a finished task's id is never reused
    args TEXT NOT NULL,                    -- JSON: a list (positional) or an object (keyword arguments)
    eta TEXT NOT NULL,                     -- UTC, 'YYYY-MM-DD HH:MM:SS.ffffff': due time, or the lease's end
    name TEXT NOT NULL,                    -- the registered task name, e.g. tasks.mail
    queue TEXT NOT NULL,
    retries INTEGER NOT NULL DEFAULT 0,    -- attempts begun (counted when claimed)
    priority INTEGER NOT NULL DEFAULT 0,   -- smaller runs first
    claimed_at TEXT NULL,                  -- UTC: when a worker claimed the attempt now running; NULL once it ends
    dead_at TEXT NULL,                     -- UTC: when the task gave up (dead: never claimed)
    last_error TEXT NULL,                  -- the last failure: type, message, traceback
    enqueued_at TEXT NULL,                 -- UTC: when it was enqueued (NULL: before 0.4)
    started_at TEXT NULL,                  -- UTC: when its first attempt was claimed
    deadline TEXT NULL,                    -- UTC: when the attempt now running times out, if the task has a timeout
    worker TEXT NULL,                      -- who runs the attempt now running: host:pid:thread
    errors TEXT NULL,                      -- JSON: the failed attempts' errors, oldest first (the last ERRORS_KEPT)
    unique_key TEXT NULL                   -- while set, no other task has it: enqueue(unique=...)
);
CREATE INDEX IF NOT EXISTS {task}_claim ON {task} (queue, dead_at, priority, eta);
CREATE INDEX IF NOT EXISTS {task}_claimed ON {task} (claimed_at) WHERE claimed_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS {task}_unique ON {task} (unique_key) WHERE unique_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS {cron} (
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    last TEXT NOT NULL,                    -- UTC: the newest fire already covered
    task_id INTEGER NULL,                  -- the task enqueued for it (no new one while it is pending)
    PRIMARY KEY (queue, name)
);

-- What tasks that keep a result returned, or the errors they gave up with; written in the commit
-- that ends the task.
CREATE TABLE IF NOT EXISTS {result} (
    id INTEGER PRIMARY KEY,                -- the task's id
    name TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,                  -- succeeded or dead
    value TEXT NULL,                       -- JSON: what it returned
    errors TEXT NULL,                      -- JSON: its failed attempts' errors, oldest first
    attempts INTEGER NOT NULL,
    enqueued_at TEXT NULL,                 -- UTC, as on its task row
    started_at TEXT NULL,
    finished_at TEXT NOT NULL,
    expires_at TEXT NOT NULL               -- UTC: deleted after
);
CREATE INDEX IF NOT EXISTS {result}_expires ON {result} (expires_at);

-- Tasks ended per queue and minute, as the workers count them (the dashboard's throughput picture):
-- each worker adds what it counted every few seconds; rows older than two hours are deleted.
CREATE TABLE IF NOT EXISTS {counts} (
    queue TEXT NOT NULL,
    minute TEXT NOT NULL,                  -- UTC: the minute's start
    done INTEGER NOT NULL DEFAULT 0,       -- tasks that succeeded
    failed INTEGER NOT NULL DEFAULT 0,     -- attempts that failed (to be retried, or dead)
    PRIMARY KEY (queue, minute)
);
"""


# Dialects ########################################################################################
# What differs between databases is data on one small class each: the fragments formatted into the
# statements above, the schema, how a worker sets up its own connection, and how the database's
# errors read (the Errors below classify them with these tables). Then how mqueue tells a
# connection's database, and connect_url, which opens one.


class Dialect:
    """What differs between databases, as data: the fragments formatted into the statements
    above, the schema, how a worker sets up its own connection, and what the database's error
    codes mean. One instance per database."""
    name = ''
    param = '%s'                 # the driver's placeholder (paramstyle format, or qmark)
    now = ''                     # the database's clock: UTC, to the microsecond where it can
    later = ''                   # that plus %s microseconds
    claim_index = ''             # an index hint for the claim
    skip_locked = ' FOR UPDATE SKIP LOCKED'
    for_update = ' FOR UPDATE'
    id_limit = ''                # appended to statements on a list of n ids
    claim_union = False          # whether several claim blocks may be joined by UNION ALL
    union_member = 'SELECT * FROM ({}) AS member'   # a block with its own ORDER BY, LIMIT, lock in a UNION ALL
    row_locks = True             # whether a running batch's rows are locked (SKIP LOCKED then tells the dead
                                 # worker's claims from the running ones: the rescue; else its process does)...
    claimed_index = ''           # ...and how the rescue reads the claimed rows
    has_claimed_index = ''       # whether the task table (the parameter) has that index (not before 0.3)
    locking_reads_at: tuple[str, ...] = ()   # isolation levels at which plain reads lock (the rescue's would wait)
    insert_ignore = 'INSERT INTO'
    on_conflict_ignore = ' ON CONFLICT DO NOTHING'
    enqueue_head = ''
    enqueue_tail = ''            # after the VALUES: returns the new id where lastrowid does not...
    enqueue_returning = ''       # ...and after one row's, the same without wrapping the INSERT
    notify = False               # enqueue notifies NOTIFY_CHANNEL (its last parameter: the payload)...
    listen: str | None = None    # ...which a worker's connection listens to
    url_parameters: frozenset[str] = frozenset()   # a URL's ?name=value passed to the driver (connect_url)
    cluster_probe: str | None = None   # a row whose second column is 'ON' on a Galera cluster's node...
    snapshot_check: str | None = None  # ...and there, if this reads ON, snapshot_off is run in each session
    snapshot_off: str | None = None
    short_lock_wait: str | None = None   # a session's lock waits made short (the lease renewal's)
    enqueue_array = False        # enqueue_many sends its args as one array (SQL_ENQUEUE_ARRAY)
    begin = None                 # starts a worker's transaction; None: the driver's implicit BEGIN
    lazy_commit = None           # lets the running transaction's commit return before it is on disk
    synchronous = None           # SQLite: reads the level at which its commits wait for the disk, if lowering
                                 # it for one transaction is safe (WAL mode); set before a transaction begins
    isolation = ''               # sets the isolation level of a worker's own connection
    kill = None                  # ends another connection (and its transaction) by id...
    session_exists = ''          # ...and whether it still exists (both servers end it asynchronously)
    connection_info = ''         # (connection id, server version)
    whereabouts = ''             # where the connection is, for the log: host:port/database, or the file
    schema = ''
    # How connect_url reaches it: its URL schemes, and the driver modules it tries in this order,
    # under the names a URL's scheme+driver gives them; a server's default port and user.
    schemes: tuple[str, ...] = ()
    drivers: Mapping[str, str] = {}
    async_drivers: tuple[str, ...] = ()   # the modules of its asyncio drivers (aenqueue), beside any of drivers'
    port, user = 0, ''
    result_into = 'REPLACE INTO'    # how a result is inserted where one of the same id may be left
    result_head = result_tail = ''  # around SQL_KEEP_RESULTS: where REPLACE is not, its upsert and NOTIFY
    share_lock = ''                 # where an insert's duplicate check share-locks the key (MySQL): a keyed
                                    # enqueue reads the holder first, and its latest version with this
    kept_join = 'JOIN'              # joins the task table to the results kept, read first...
    primary_index = ''              # ...by primary key
    counts_by_range = True          # queue_stats(cap=...) counts index ranges (else: one scan, exact)
    list_queues = SQL_QUEUES_STEPPED   # the queues with rows: queue_stats(cap=...), the scheduled list
    not_dead = 'dead_at IS NULL'    # in the statements that read the claimed index (see SQLite's)
    counts_alias = ' AS counted'    # SQL_COUNT_ENDED's upsert: adds to the row a minute already has
    counts_upsert = (' ON CONFLICT (queue, minute) DO UPDATE SET done = counted.done + excluded.done, '
                     'failed = counted.failed + excluded.failed')
    has_table = ''                  # whether a table (the parameter) exists
    FRAGMENTS = ('now', 'later', 'claim_index', 'claimed_index', 'skip_locked', 'for_update', 'insert_ignore',
                 'on_conflict_ignore', 'enqueue_head', 'enqueue_tail', 'enqueue_returning', 'result_into',
                 'result_head', 'result_tail', 'kept_join', 'primary_index', 'share_lock', 'not_dead', 'counts_alias',
                 'counts_upsert')
    # Its errors, by the code error_code() reads from a driver's exception: those that mean "try
    # again" rather than "this task is broken" (the server gave up on a statement over a lock; the
    # connection is gone), and those that mean mqueue's tables are missing or out of date.
    lock_conflicts: Mapping[Any, str] = {}
    lost_connection: Mapping[Any, str] = {}
    lost_connection_classes: tuple[str, ...] = ()   # SQLSTATE classes, every code of which is one
    missing_table: Mapping[Any, str] = {}
    missing_column: Mapping[Any, str] = {}

    def render(self, statement: str, task: str, cron: str, lists: Mapping[str, int]) -> str:
        """A statement for this database: tables, fragments, and per list n placeholders (for
        ``rows``, n rows of SQL_ENQUEUE_ROW)."""
        values = {name: getattr(self, name) for name in self.FRAGMENTS}
        values.update({name: _placeholders(n) for name, n in lists.items()})
        values['rows'] = ', '.join([SQL_ENQUEUE_ROW] * lists.get('rows', 0)).format(later=self.later, now=self.now)
        values['kept'] = SQL_KEPT_FIRST + SQL_KEPT_NEXT * (lists.get('kept', 1) - 1)
        values['kept_expiry'] = self.later.replace('%s', 'kept.keep')   # now plus each row's keep
        text = statement.format(task=task, cron=cron, result=task + RESULT_SUFFIX, counts=task + COUNTS_SUFFIX,
                                id_limit=self.id_limit.format(n=lists.get('ids', 0)), **values)
        return text if self.param == '%s' else text.replace('%s', self.param)

    def union(self, blocks: Iterable[str]) -> str:
        """Statements joined by UNION ALL, each keeping its own ORDER BY, LIMIT and lock."""
        return ' UNION ALL '.join(self.union_member.format(block) for block in blocks)

    def setup(self, version: str) -> list[str]:
        """Statements setting up a worker's own connection to a server of this version."""
        return []

    def refusal(self, version: str) -> str | None:
        """Why the worker cannot run on this server, or None."""
        return None

    def take_over(self, conn: Any) -> None:
        """Make a worker's own connection transactional: claims hold no locks in autocommit mode."""
        _set_autocommit(conn, False)

    def idle(self, conn: Any, on: bool) -> None:
        """Switch a worker's own connection in and out of autocommit between polls."""
        _set_autocommit(conn, on)

    def stamp(self, value: dt.datetime) -> Any:
        """A naive UTC datetime as a parameter."""
        return value

    def keyset(self, text: str) -> Any:
        """A page's cursor, the text of a time as the database returned it (``str()`` of it), as a
        parameter comparing equal to that value."""
        return dt.datetime.fromisoformat(text)

    def open(self, driver: Any, options: dict) -> Any:
        """A new connection through a driver module, to connect_url's host, port, user, password
        and database."""
        raise NotImplementedError

    def error_code(self, exc: BaseException) -> Any:
        """The code a driver's exception carries in this database's form, or None."""
        return None


class MySQL(Dialect):
    """MySQL 8.0.1+ and MariaDB 10.6+, through pymysql, mysqlclient (MySQLdb) or mysql-connector-python."""
    name = 'mysql'
    now = 'UTC_TIMESTAMP(6)'
    later = 'UTC_TIMESTAMP(6) + INTERVAL %s MICROSECOND'
    claim_index = ' FORCE INDEX (claim)'
    # Without it, on a small table (or stale statistics) the optimizer scans the whole table, and
    # waits on, or deadlocks with, the rows other workers hold; with it, it reads just those rows.
    id_limit = ' ORDER BY id LIMIT {n}'
    claim_union = True
    union_member = '({})'
    claimed_index = ' FORCE INDEX (claimed)'
    list_queues = SQL_QUEUES_DISTINCT   # (a loose index scan)
    counts_alias, counts_upsert = '', ' ON DUPLICATE KEY UPDATE done = done + VALUES(done), failed = failed + VALUES(failed)'
    has_table = ('SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() '
                 'AND table_name = %s')
    has_claimed_index = ("SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "
                         "AND table_name = %s AND index_name = 'claimed'")
    locking_reads_at = ('SERIALIZABLE',)   # InnoDB reads with shared locks there
    insert_ignore, on_conflict_ignore = 'INSERT IGNORE INTO', ''
    # (Not REPLACE: its next-key locks on the results table's primary key made two workers' batches
    # deadlock, and InnoDB rolled one back whole, tasks run included: measured, a batch of 20 ran
    # twice. retry_dead deletes a revived task's result, so none is left when it ends again.)
    result_into, kept_join, primary_index = 'INSERT IGNORE INTO', 'STRAIGHT_JOIN', ' FORCE INDEX (PRIMARY)'
    # IGNORE's duplicate-key check share-locks the holder's index entry until the enqueuer's
    # transaction ends, and the holder's completion would wait for that: a plain read first finds
    # a committed holder without any lock.
    share_lock = ' LOCK IN SHARE MODE'
    isolation = 'SET SESSION TRANSACTION ISOLATION LEVEL {level}'
    kill = 'KILL CONNECTION %s'
    session_exists = 'SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s'
    connection_info = 'SELECT CONNECTION_ID(), VERSION()'
    cluster_probe = "SHOW VARIABLES LIKE 'wsrep_on'"   # (no row on MySQL; OFF on MariaDB outside a cluster)
    # A batch reads its rows, then (their leases renewed by another session meanwhile) writes them:
    # MariaDB 11.6+ refuses that at REPEATABLE READ (innodb_snapshot_isolation, ON there; older
    # servers lack it, or have it OFF).
    snapshot_check = "SHOW VARIABLES LIKE 'innodb_snapshot_isolation'"
    snapshot_off = 'SET SESSION innodb_snapshot_isolation = OFF'
    short_lock_wait = 'SET SESSION innodb_lock_wait_timeout = 1'
    whereabouts = "SELECT CONCAT(@@hostname, ':', @@port, '/', COALESCE(DATABASE(), ''))"
    schema = SCHEMA_MYSQL
    schemes = ('mysql', 'mariadb')
    drivers = {'pymysql': 'pymysql', 'mysqldb': 'MySQLdb', 'mysqlclient': 'MySQLdb', 'connector': 'mysql.connector',
               'mysqlconnector': 'mysql.connector', 'mysql.connector': 'mysql.connector'}   # (the last two SQLAlchemy's)
    async_drivers = ('aiomysql',)
    port, user = 3306, 'root'
    lock_conflicts = {1205: 'lock wait timeout', 1213: 'deadlock'}
    lost_connection = {1053: 'server shutdown', 1927: 'connection killed', 2002: 'cannot connect',
                       2003: 'cannot connect', 2006: 'server has gone away', 2013: 'lost connection',
                       2055: 'lost connection', 4031: 'disconnected for inactivity',
                       # A Galera node out of its cluster's primary component, or not synced yet:
                       # its sessions are refused until it is (measured: a node killed and rejoining)
                       1047: 'cluster node not ready', 1180: 'commit failed: no primary component'}
    missing_table = {1146: 'no such table'}
    missing_column = {1054: 'unknown column'}

    def setup(self, version: str) -> list[str]:
        # A task's exclusivity rests on its row lock, which lives as long as the connection: no
        # idle timeout may cut it while a long task runs (MariaDB has three more).
        statements = ['SET SESSION wait_timeout = 31536000']
        if 'mariadb' in version.lower():
            statements.append('SET SESSION idle_transaction_timeout = 0, idle_write_transaction_timeout = 0, '
                              'idle_readonly_transaction_timeout = 0')
        return statements

    def refusal(self, version: str) -> str | None:
        numbers = [int(part) for part in re.findall(r'\d+', version.split('-')[0])[:3]] + [0, 0, 0]
        mariadb = 'mariadb' in version.lower()
        if numbers[:3] < ([10, 6, 0] if mariadb else [8, 0, 1]):
            return (f'the server is {"MariaDB" if mariadb else "MySQL"} {version}, which has no FOR UPDATE SKIP '
                    'LOCKED: mqueue needs MariaDB 10.6+ or MySQL 8.0.1+ (it will not fall back to a claim that '
                    'could hand one task to two workers)')
        return None

    def open(self, driver: Any, options: dict) -> Any:
        """The first of the URL's hosts that takes the connection and a query, in their order (the
        drivers take one host: a Galera cluster's nodes, say, are tried here)."""
        account = {'user': options['user'], 'password': options['password'], 'database': options['database']}
        if driver.__name__ == 'mysql.connector':
            # Named, as PyMySQL does: for a server whose version reads 8.0 or more (MariaDB 11 too)
            # mysql-connector 9+ would pick utf8mb4_0900_ai_ci, which MariaDB before 11.4.5 lacks.
            account['collation'] = 'utf8mb4_general_ci'
        *others, last = options['hosts']
        for host, port in others:
            conn = None
            try:
                conn = driver.connect(host=host, port=port, charset='utf8mb4', autocommit=False, **account)
                with _cursor(conn) as cursor:   # (a Galera node out of its cluster takes the connection,
                    cursor.execute('SELECT 1')  # then no query: error 1047)
                    cursor.fetchall()
                return conn
            except Exception as exc:
                if not _database_error(exc):
                    raise
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                logger.debug('cannot use %s:%s (%s); trying the next host', host, port,
                             _describe_error(exc, short=True))
        return driver.connect(host=last[0], port=last[1], charset='utf8mb4', autocommit=False, **account)

    def error_code(self, exc: BaseException) -> int | None:
        # The error number: mysql-connector's errno, else the first argument (PyMySQL, MySQLdb).
        # Read before any SQLSTATE: mysql-connector has one too, and a lock-wait timeout's is only
        # HY000 ("general error"). A number below 1 means none (mysql-connector's -1, PyMySQL's 0).
        for number in (getattr(exc, 'errno', None), exc.args[0] if exc.args else None):
            if isinstance(number, int) and not isinstance(number, bool) and number > 0:
                return number
        return None


class PostgreSQL(Dialect):
    """PostgreSQL 9.6+, through psycopg 3 or psycopg2. Idle workers LISTEN, enqueue NOTIFYs."""
    name = 'postgresql'
    # statement_timestamp(), the start of the statement: not now(), the start of the transaction
    # (a batch's transaction lasts as long as its tasks), nor clock_timestamp(), which is volatile
    # and so cannot bound an index range (the claim would read every due task and sort them).
    now = "(statement_timestamp() AT TIME ZONE 'UTC')"
    later = "(statement_timestamp() AT TIME ZONE 'UTC') + %s * INTERVAL '1 microsecond'"
    enqueue_head = 'WITH new AS ('
    enqueue_tail = f" RETURNING id) SELECT MIN(id), pg_notify('{NOTIFY_CHANNEL}', %s) FROM new"
    enqueue_returning = f" RETURNING id, pg_notify('{NOTIFY_CHANNEL}', %s)"   # (no CTE: 3% faster an enqueue)
    notify = True
    listen = f'LISTEN {NOTIFY_CHANNEL}'
    enqueue_array = True
    result_into, result_head = 'INSERT INTO', 'WITH written AS ('
    result_tail = (' ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, value = EXCLUDED.value, '
                   'errors = EXCLUDED.errors, attempts = EXCLUDED.attempts, enqueued_at = EXCLUDED.enqueued_at, '
                   'started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, expires_at = '
                   f"EXCLUDED.expires_at RETURNING id) SELECT pg_notify('{RESULT_CHANNEL}', CAST(%s AS TEXT) || id) "
                   'FROM written')   # (the payload: the results table, a colon and the id)
    # Its claim index leaves the dead out (no range counts them), and a parallel scan counts a table
    # of 1,000,000 rows in about 150 ms: queue_stats counts exactly, capped or not.
    counts_by_range = False
    list_queues = SQL_WAITING_QUEUES_STEPPED
    lazy_commit = 'SET LOCAL synchronous_commit = off'
    has_claimed_index = "SELECT COUNT(to_regclass(%s || '_claimed'))"
    has_table = 'SELECT COUNT(to_regclass(%s))'
    isolation = 'SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level}'
    kill = 'SELECT pg_terminate_backend(%s)'
    session_exists = 'SELECT COUNT(*) FROM pg_stat_activity WHERE pid = %s'
    connection_info = 'SELECT pg_backend_pid(), version()'
    whereabouts = ("SELECT COALESCE(HOST(inet_server_addr()), 'local socket') || ':' || current_setting('port') "
                   "|| '/' || current_database()")
    schema = SCHEMA_POSTGRESQL
    schemes = ('postgresql', 'postgres')
    drivers = {'psycopg': 'psycopg', 'psycopg3': 'psycopg', 'psycopg2': 'psycopg2'}
    async_drivers = ('asyncpg',)   # (and psycopg's AsyncConnection)
    port, user = 5432, 'postgres'
    # The URL's parameters passed on to libpq (others are ignored): the connection's own, never the
    # host, port, user, password or database the URL names, nor a driver's options.
    url_parameters = frozenset((
        'target_session_attrs', 'load_balance_hosts', 'connect_timeout', 'application_name', 'options', 'sslmode',
        'sslrootcert', 'sslcert', 'sslkey', 'sslcrl', 'sslpassword', 'sslcompression', 'sslnegotiation',
        'channel_binding', 'gssencmode', 'krbsrvname', 'requirepeer', 'passfile', 'service', 'keepalives',
        'keepalives_idle', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout', 'client_encoding'))
    lock_conflicts = {'40P01': 'deadlock', '40001': 'serialization failure', '55P03': 'lock not available'}
    lost_connection = {'57P01': 'admin shutdown', '57P02': 'crash shutdown', '57P03': 'cannot connect now'}
    lost_connection_classes = ('08',)   # connection exceptions
    missing_table = {'42P01': 'undefined table'}
    missing_column = {'42703': 'undefined column'}

    def setup(self, version: str) -> list[str]:
        statements = ['SET idle_in_transaction_session_timeout = 0']
        match = re.search(r'PostgreSQL (\d+)', version)
        if match and int(match.group(1)) >= 14:
            statements.append('SET idle_session_timeout = 0')
        return statements

    def open(self, driver: Any, options: dict) -> Any:
        """libpq takes several hosts itself, and the URL's parameters (target_session_attrs=read-write
        finds the primary of a failover pair, connect_timeout...)."""
        hosts = options['hosts']
        return driver.connect(host=','.join(host for host, _ in hosts), port=','.join(str(port) for _, port in hosts),
                              user=options['user'], password=options['password'],
                              dbname=options['database'] or options['user'], **options['parameters'])

    def error_code(self, exc: BaseException) -> str | None:
        state = getattr(exc, 'sqlstate', None) or getattr(exc, 'pgcode', None)   # psycopg's; psycopg2's
        return state if isinstance(state, str) else None


class SQLite(Dialect):
    """SQLite 3.24+ through the standard library: no row locks, so a worker's transaction takes
    the database's write lock (BEGIN IMMEDIATE) and one task runs at a time per database file."""
    name = 'sqlite'
    param = '?'
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    later = "strftime('%Y-%m-%d %H:%M:%f', 'now', (%s / 1e6) || ' seconds')"
    skip_locked = for_update = ''
    # ANALYZE's statistics make "dead_at IS NULL" look rare (the claim index's (queue, dead_at) has
    # as many values as dead rows), so the planner would read the running tasks by a skip-scan of the
    # claim index, every row not dead, rather than from the claimed index: told it is not (326 ms
    # -> 0.1 ms for the running list at 1,000,000 rows).
    not_dead = 'likelihood(dead_at IS NULL, 0.9)'
    row_locks = False            # one lock, the database's: a dead worker is told by its process (same host)
    has_claimed_index = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ? || '_claimed'"
    has_table = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
    begin = 'BEGIN IMMEDIATE'
    # In WAL mode a commit at level NORMAL (1) does not wait for the disk, and the WAL is one file
    # written in order, so the next commit at FULL (2) makes the earlier one durable too. Outside
    # WAL mode NORMAL may risk more than the transaction: left alone (no row).
    synchronous = "SELECT synchronous FROM pragma_synchronous, pragma_journal_mode WHERE journal_mode = 'wal'"
    connection_info = 'SELECT NULL, sqlite_version()'
    whereabouts = "SELECT file FROM pragma_database_list WHERE name = 'main'"
    schema = SCHEMA_SQLITE
    schemes = ('sqlite',)
    drivers = {'sqlite3': 'sqlite3', 'pysqlite': 'sqlite3'}   # (the second SQLAlchemy's)
    async_drivers = ('aiosqlite',)
    lock_conflicts = {('sqlite', 5): 'database is locked', ('sqlite', 6): 'table is locked'}
    # (Its missing tables and columns have SQLITE_ERROR, anyone's code: _schema_problem reads the words.)
    # Python < 3.11's sqlite3 errors carry no result code (sqlite_errorcode came in 3.11), only
    # SQLite's message: its fixed wording for SQLITE_BUSY and SQLITE_LOCKED (before any ': table').
    locked_texts = {'database is locked': 5, 'database table is locked': 6, 'database schema is locked': 6}

    def setup(self, version: str) -> list[str]:
        return ['PRAGMA journal_mode = WAL', f'PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}']

    def refusal(self, version: str) -> str | None:
        if [int(part) for part in version.split('.')[:2]] < [3, 24]:
            return f'SQLite {version} is too old: mqueue needs 3.24+ (ON CONFLICT)'
        return None

    def take_over(self, conn: Any) -> None:
        # The worker issues BEGIN IMMEDIATE itself: sqlite3's implicit BEGIN is DEFERRED, and
        # would let a SAVEPOINT outside a transaction start (and its RELEASE commit) one.
        if getattr(conn, 'autocommit', -1) != -1:   # Python 3.12+: back to legacy transaction control
            conn.autocommit = -1
        conn.isolation_level = None

    def idle(self, conn: Any, on: bool) -> None:
        pass   # outside BEGIN IMMEDIATE the connection autocommits already

    def stamp(self, value: dt.datetime) -> str:
        return value.isoformat(' ', 'microseconds')

    def keyset(self, text: str) -> str:
        return text   # (times are text: compared as the database wrote them)

    def open(self, driver: Any, options: dict) -> Any:
        return driver.connect(options['database'], timeout=SQLITE_BUSY_TIMEOUT)

    def error_code(self, exc: BaseException) -> tuple[str, int] | None:
        code = getattr(exc, 'sqlite_errorcode', None)
        if code is None:
            code = self.locked_texts.get(str(exc).split(':')[0])
        return ('sqlite', code & 0xff) if isinstance(code, int) else None   # the primary result code


DIALECTS = {dialect.name: dialect for dialect in (MySQL(), PostgreSQL(), SQLite())}
# The top-level module a driver's connection class lives in -> its database ('mysql' is
# mysql-connector-python's mysql.connector).
DRIVERS = {module.split('.')[0]: dialect.name for dialect in DIALECTS.values()
           for module in (*dialect.drivers.values(), *dialect.async_drivers)}


def _placeholders(n: int) -> str:
    return ', '.join(['%s'] * n)


def _set_autocommit(conn: Any, on: bool) -> None:
    setting = getattr(conn, 'autocommit', None)
    if callable(setting):       # pymysql, MySQLdb
        setting(on)
    elif setting is not None:   # psycopg, psycopg2, mysql.connector: an attribute
        conn.autocommit = on


def _dialect_named(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except (KeyError, TypeError):
        raise ValueError(f'unknown dialect {name!r}; the dialects are {", ".join(DIALECTS)}') from None


def _dialect_of(conn: Any) -> Dialect:
    """The database behind a DB-API connection, told by the module its driver's class lives in
    (remembered per class: enqueue asks on every call); SQLAlchemy's pooled wrapper is looked through."""
    dialect = _DIALECT_OF_CLASS.get(type(conn))
    if dialect is not None:
        return dialect
    inner = getattr(conn, 'dbapi_connection', None) or getattr(conn, 'driver_connection', None)
    driver = type(inner if inner is not None else conn).__module__.split('.')[0]
    if driver not in DRIVERS:
        raise MQueueError(f'cannot tell the database behind a {driver}.{type(conn).__name__} connection: give '
                          f'Registry(dialect=...) / mqueue.init(dialect=...) one of {", ".join(DIALECTS)}')
    dialect = DIALECTS[DRIVERS[driver]]
    if inner is None:
        _DIALECT_OF_CLASS[type(conn)] = dialect
    return dialect


_DIALECT_OF_CLASS: dict[type, Dialect] = {}


def connect_url(url: str) -> Callable[[], Any]:
    """A connect callable for a database URL; each call opens a new connection.

    ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (the standard library's
    sqlite3); ``postgresql://user:password@host:port/db`` (psycopg 3, else psycopg2;
    ``postgresql+psycopg2://`` picks one); ``mysql://user:password@host:port/db`` (pymysql, else
    mysqlclient, else mysql-connector-python; ``mysql+mysqldb://`` or ``mysql+connector://`` picks
    one). The callable's ``description`` names the database without the password. Several hosts,
    ``host1:port1,host2:port2``, are tried in their order (a Galera cluster's nodes); on PostgreSQL
    by libpq, with the URL's parameters (``?target_session_attrs=read-write`` finds the primary
    of a failover pair).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _unreadable_url() from None
    scheme, _, driver = parts.scheme.partition('+')
    dialect = next((dialect for dialect in DIALECTS.values() if scheme in dialect.schemes), None)
    if dialect is None:
        raise ValueError(f'unsupported database URL scheme {parts.scheme!r}: use sqlite:///path.db, '
                         'postgresql://user:password@host/db or mysql://user:password@host/db')
    modules = list(dict.fromkeys(dialect.drivers.values()))
    if driver:
        if driver.lower() not in dialect.drivers:
            raise ValueError(f'unknown driver {driver!r} for {scheme}: use one of {", ".join(modules)}')
        modules = [dialect.drivers[driver.lower()]]
    if dialect.name == 'sqlite':   # a file, not a server
        path = unquote(parts.path[1:] if parts.path.startswith('/') else parts.path)
        if parts.netloc or not path:
            raise ValueError(f'bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db')
        options, description = {'database': path}, f'sqlite:///{path}'
    else:
        hosts = _hosts(parts.netloc.rpartition('@')[2], dialect.port)
        options = {
            'hosts': hosts, 'user': unquote(parts.username) if parts.username else dialect.user,
            'password': unquote(parts.password) if parts.password else '',
            'database': unquote(parts.path.lstrip('/')) or None,
            'parameters': {key: value for key, value in parse_qsl(parts.query) if key in dialect.url_parameters},
        }
        where = ','.join(f'[{host}]:{port}' if ':' in host else f'{host}:{port}' for host, port in hosts)
        description = f"{scheme}://{options['user']}@{where}/{options['database'] or ''}"

    def connect() -> Any:
        return dialect.open(_first_importable(modules), options)
    connect.description = description
    return connect


def _hosts(text: str, default_port: int) -> list[tuple[str, int]]:
    """A URL's host:port, or several, host:port,host:port (an IPv6 address in brackets); no host
    is 127.0.0.1, no port the database's."""
    if not text:
        return [('127.0.0.1', default_port)]
    hosts = []
    for each in text.split(','):
        if each.startswith('['):   # [::1]:5432
            host, _, rest = each[1:].partition(']')
            if rest and not rest.startswith(':'):
                raise _unreadable_url()
            port = rest[1:]
        else:
            host, _, port = each.partition(':')
        if not host or not (port == '' or port.isdigit() and int(port) <= 65535):
            raise _unreadable_url()
        hosts.append((host, int(port) if port else default_port))
    return hosts


def _unreadable_url() -> ValueError:
    # (the URL's text may quote part of the password: say what is wrong, not what is there)
    return ValueError('bad database URL: its host or port cannot be read (percent-encode any / ? # @ : in the user '
                      'name and password)')


def _first_importable(modules: Sequence[str]) -> Any:
    for name in modules:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    advice = {'MySQLdb': 'pip install mysqlclient', 'mysql.connector': 'pip install mysql-connector-python',
              'sqlite3': "a Python built with the standard library's sqlite3 (this one lacks it)"}
    raise MQueueError(f'no driver for this database: {advice.get(modules[0], "pip install " + modules[0])}')


# Errors ##########################################################################################


class MQueueError(Exception):
    """Base class of the errors mqueue raises itself."""


class NoConnectionError(MQueueError):
    """Task.enqueue() found neither a running task nor a provider given to init()."""


class NotInTaskError(MQueueError, LookupError):
    """current() was called outside a running task."""


class TaskTimeout(MQueueError):
    """A task ran past its timeout: the error its attempt failed with (kept in its errors), once its
    worker had ended the attempt's database session."""


class _TransactionLost(Exception):
    """A task's failure took its whole transaction with it (the savepoint is gone). The suspects:
    the task, if known; else the batch's tasks that had the connection (that read it)."""

    def __init__(self, suspects: list[_Claim], info: dict, conflict: bool = False):
        super().__init__(info['error'])
        self.suspects, self.info = suspects, info
        self.conflict = conflict   # a deadlock: nobody's fault, every task of the batch goes back uncounted


class _ClaimsLost(Exception):
    """Galera: before its commit, a batch found tasks of its own claimed by another worker since
    (their lease ended while they ran: its renewal failed); its writes must not commit."""


class _TimedOut(BaseException):
    """Raised in a worker's thread when its task returns after its timeout (``watch``): the batch's
    transaction is rolled back, then what became of the batch is recorded."""

    def __init__(self, watch: _Watch):
        super().__init__(watch.claim.id)
        self.watch = watch


class _ColdShutdown(KeyboardInterrupt):
    """A second SIGTERM/SIGINT: abandon the running task now."""


class _StoppedStarting(BaseException):
    """SIGTERM/SIGINT while ``mqueue worker`` imports its tasks, before the worker's own handlers
    are in (not an Exception: nothing may catch it as a task's or the database's error)."""


# A driver's error is classified by what it carries, never by the driver's name, so that every
# PEP 249 driver gets the same guarantees: each dialect above reads its own kind of code (a MySQL
# error number, a SQLSTATE, an SQLite result code), MySQL's first, and the first it finds is the
# error's. The codes of all dialects are distinct (numbers, strings, pairs), so one table each:
def _codes(kind: str) -> dict[Any, str]:
    return {code: why for dialect in DIALECTS.values() for code, why in getattr(dialect, kind).items()}


LOCK_CONFLICTS = _codes('lock_conflicts')
RETRYABLE_ERRORS = {**LOCK_CONFLICTS, **_codes('lost_connection')}
RETRYABLE_SQLSTATE_CLASSES = tuple(c for dialect in DIALECTS.values() for c in dialect.lost_connection_classes)
MISSING_TABLE = _codes('missing_table')
MISSING_COLUMN = _codes('missing_column')


def _database_error(exc: BaseException) -> bool:
    """Whether an exception comes from a database driver: PEP 249 has every driver's errors
    derive from classes named DatabaseError or InterfaceError."""
    return any(cls.__name__ in ('DatabaseError', 'InterfaceError') for cls in type(exc).__mro__)


def _error_code(exc: BaseException) -> Any:
    """A database error's code: a MySQL error number, a SQLSTATE, ('sqlite', result code), or None."""
    if not _database_error(exc):
        return None
    for dialect in DIALECTS.values():
        code = dialect.error_code(exc)
        if code is not None:
            return code
    return None


def _lock_conflict(exc: BaseException) -> bool:
    """A deadlock, lock-wait timeout or busy database: the server gave up on a statement (InnoDB:
    on the transaction); trying again will do."""
    return _error_code(exc) in LOCK_CONFLICTS


def _retryable(exc: BaseException) -> bool:
    """Whether a database error is transient: a lost connection or a lock conflict."""
    if type(exc).__name__ == 'InterfaceError':   # PEP 249: the connection itself is unusable
        return True
    code = _error_code(exc)
    if code in RETRYABLE_ERRORS:
        return True
    if isinstance(code, str) and code.startswith(RETRYABLE_SQLSTATE_CLASSES):
        return True
    if code is None and type(exc).__name__ == 'OperationalError' and (
            hasattr(exc, 'sqlstate') or hasattr(exc, 'pgcode')):
        # A driver that reports the server's SQLSTATE reported none: the error is the client's,
        # a lost connection (psycopg's). sqlite3, which has no SQLSTATE, is not meant here: before
        # Python 3.11 none of its errors carries a code.
        return True
    return isinstance(exc, (ConnectionError, TimeoutError))


def _schema_problem(exc: BaseException) -> str | None:
    """What to do when a statement failed because mqueue's tables are missing or out of date."""
    code = _error_code(exc)
    # SQLite's code for these is SQLITE_ERROR (1), anyone's error: only its words tell them apart
    text = str(exc) if _database_error(exc) and code in (None, ('sqlite', 1)) else ''
    if code in MISSING_TABLE or text.startswith('no such table'):
        return f'a table is missing ({_describe_error(exc, short=True)}): run `mqueue init-db` to create it'
    if code in MISSING_COLUMN or text.startswith('no such column') or 'has no column named' in text:
        return (f'a table lacks a column ({_describe_error(exc, short=True)}): it was made by an older mqueue; '
                'see "Upgrading" in docs/upgrading.md for the ALTER TABLE')
    return None


def _describe_error(exc: BaseException, short: bool = False) -> str:
    try:
        head = f'{type(exc).__name__}: {exc}'
    except Exception:   # an exception whose __str__ fails must not stop its own bookkeeping
        head = f'{type(exc).__name__}: <unprintable>'
    if short:   # the first line: PostgreSQL adds the statement and a caret on the next ones
        return head.strip().split('\n', 1)[0][:300]
    return _cut(head + '\n' + ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _cut(text: str) -> str:
    """Keep an error within ERROR_MAX characters: its head (type, message) and its tail (where it
    was raised); lone surrogates (undecodable file names, say) are escaped so the driver can send it."""
    text = text.encode('utf-8', 'backslashreplace').decode('utf-8')
    if len(text) <= ERROR_MAX:
        return text
    head = ERROR_MAX // 4
    return f'{text[:head]}\n... [{len(text) - ERROR_MAX} characters cut] ...\n{text[-(ERROR_MAX - head - 50):]}'


# Checks of what callers pass: each returns the value, or raises at the call site the error that
# says what was wrong.

def _identifier(name: str, room: int = 0) -> str:
    """A table name, accepted only as a plain identifier so it can be formatted into SQL; ``room``:
    characters left for names made from it (its results table's index, <task>_result_expires),
    within PostgreSQL's 63 (MySQL takes 64)."""
    most = 63 - room
    if not isinstance(name, str) or not re.fullmatch(rf'[A-Za-z_][A-Za-z0-9_]{{0,{most - 1}}}', name):
        raise ValueError(f'table name {name!r} is not a plain identifier (letters, digits, _; at most {most})')
    return name


def _checked_text(what: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f'{what} must be a non-empty string, not {value!r}')
    if '\x00' in value:   # PostgreSQL's text cannot hold it, and no name needs it
        raise ValueError(f'{what} {value[:40]!r} contains a NUL character')
    if len(value) > limit:
        raise ValueError(f'{what} {value[:40]!r}... is {len(value)} characters; the {what} column holds {limit}')
    return value


def _checked_key(unique: Any) -> str:
    """A unique key as given: a string of 1 to UNIQUE_MAX characters."""
    if not isinstance(unique, str) or not unique or len(unique) > UNIQUE_MAX:
        raise ValueError(f'unique must be True, False or a key of 1 to {UNIQUE_MAX} characters, not {unique!r}')
    return unique


def _whole_number(what: str, value: Any, low: int, high: int | None = None) -> int:
    """An int (a bool is not one) from low, to high if given."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f'from {low} to {high}' if high is not None else f'>= {low}'
        raise ValueError(f'{what} must be a whole number {bounds}, not {value!r}')
    return value


def _seconds(what: str, value: Any, *, high: float = MAX_SECONDS, positive: bool = False) -> float:
    """A duration: a number of seconds or a timedelta, from 0 (above it if positive) to high."""
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
            or not (0 < seconds if positive else 0 <= seconds) or not seconds <= high):
        bounds = f'more than 0 and at most {high:g}' if positive else f'from 0 to {high:g}'
        raise ValueError(f'{what} must be a number of seconds {bounds} (or a timedelta), not {value!r}')
    return float(seconds)


# Tasks ###########################################################################################


class _cursor:
    """A cursor on a connection, closed after the block whatever happens: the one way mqueue
    opens cursors, on the caller's connections and its own. A failed close decides nothing: the
    block's own error, or the commit that follows, says what happened to the transaction (closing
    a cursor whose connection is gone fails too, and would hide the error that matters). (A class,
    not a generator: an enqueue opens one, and a quarter of its Python went to the generator's.)"""
    __slots__ = ('cursor',)

    def __init__(self, conn: Any):
        self.cursor = conn.cursor()

    def __enter__(self) -> Any:
        return self.cursor

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.cursor.close()
        except Exception:
            pass


class _Reply(NamedTuple):
    """What a statement of enqueue's gave back: its first row (if it returns rows), and the new id
    and the rows written where the driver says them (MySQL, SQLite)."""
    row: tuple | None
    lastrowid: int | None
    rowcount: int


def _run(conn: Any, steps: Generator[tuple, _Reply, Any]) -> Any:
    """Run a generator of statements (see Registry._enqueue_steps) on a DB-API connection. (Its
    first step checks the arguments: before any cursor is opened.)"""
    if _async_execute(conn) is not None:
        raise MQueueError(f'{type(conn).__name__} is an asyncio connection: await aenqueue(...) on it')
    try:
        request = next(steps)
        with _cursor(conn) as cursor:
            reply = _CursorReply(cursor)
            while True:
                cursor.execute(*request)
                request = steps.send(reply)
    except StopIteration as done:
        return done.value


class _CursorReply:
    """A _Reply's fields, read from the cursor as a step asks: psycopg builds a statement's column
    descriptions only when asked (2% of an enqueue). A step reads what it needs before its next
    statement, and the row exactly once of each statement that returns one (and of no other):
    mysql-connector's unbuffered cursor must not be left with a row unread."""
    __slots__ = ('cursor',)

    def __init__(self, cursor: Any):
        self.cursor = cursor

    @property
    def row(self) -> tuple | None:
        return _tuple(self.cursor.fetchone())

    @property
    def lastrowid(self) -> int | None:
        return getattr(self.cursor, 'lastrowid', None)

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount


async def _arun(conn: Any, steps: Generator[tuple, _Reply, Any]) -> Any:
    """Run a generator of statements on an asyncio connection, told by its driver's class; on a
    DB-API connection, as _run does."""
    execute = _async_execute(conn)
    if execute is None:
        return _run(conn, steps)
    try:
        request = next(steps)
        while True:
            request = steps.send(await execute(conn, *request))
    except StopIteration as done:
        return done.value


async def _execute_on_cursor(conn: Any, sql: str, params: Sequence) -> _Reply:
    """A statement through an asyncio driver's DB-API-like cursor: psycopg 3, aiomysql, aiosqlite."""
    async with conn.cursor() as cursor:
        await cursor.execute(sql, params)
        row = _tuple(await cursor.fetchone()) if cursor.description else None
        return _Reply(row, getattr(cursor, 'lastrowid', None), cursor.rowcount)


async def _execute_on_asyncpg(conn: Any, sql: str, params: Sequence) -> _Reply:
    """A statement through asyncpg, which has no cursors and numbers its placeholders ($1, $2...)."""
    numbers = iter(range(1, len(params) + 1))
    rows = await conn.fetch(re.sub('%s', lambda _: f'${next(numbers)}', sql), *params)
    return _Reply(tuple(rows[0]) if rows else None, None, len(rows))


# An asyncio driver's connection class (its top-level module, its name; or a base class's) -> how
# enqueue's statements run on it (its database: the dialect whose async_drivers name the module).
ASYNC_EXECUTE = {('psycopg', 'AsyncConnection'): _execute_on_cursor, ('aiomysql', 'Connection'): _execute_on_cursor,
                 ('aiosqlite', 'Connection'): _execute_on_cursor, ('asyncpg', 'Connection'): _execute_on_asyncpg,
                 ('asyncpg', 'PoolConnectionProxy'): _execute_on_asyncpg}
_ASYNC_EXECUTE_OF_CLASS: dict[type, Callable | None] = {}


def _async_execute(conn: Any) -> Callable | None:
    """How enqueue's statements run on this connection if it is an asyncio one (remembered per class)."""
    cls = type(conn)
    if cls not in _ASYNC_EXECUTE_OF_CLASS:
        _ASYNC_EXECUTE_OF_CLASS[cls] = next((ASYNC_EXECUTE[key] for key in (
            (base.__module__.split('.')[0], base.__name__) for base in cls.__mro__) if key in ASYNC_EXECUTE), None)
    return _ASYNC_EXECUTE_OF_CLASS[cls]


def _new_id(dialect: Dialect, reply: _Reply) -> int:
    """The id of the task SQL_ENQUEUE_NOW inserted: returned by the statement, or the driver's."""
    return reply.row[0] if dialect.enqueue_returning else reply.lastrowid


def _tuple(row: Any) -> tuple | None:
    """A row as a tuple, whatever the cursor's row factory (psycopg's dict_row, aiomysql's DictCursor)."""
    return row if type(row) is tuple else tuple(row.values()) if isinstance(row, Mapping) else row


class Registry:
    """The tasks a program knows, where their rows live, and how to reach the caller's connection.

    The module-level ``task``, ``init``, ``enqueue`` and ``retry_dead`` use a default Registry;
    make your own to use other table names or to keep two sets of tasks apart.

    Args:
        queue: the queue of tasks that name none.
        connection: a zero-argument callable returning the DB-API connection that ``Task.enqueue``
            uses outside a running task (e.g. the connection of the current web request).
        table: the task table's name (its results table's is that plus ``_result``); cron_table:
            the cron table's name. Plain identifiers only.
        dialect: 'mysql', 'postgresql' or 'sqlite'; default: told by each connection's driver
            (pymysql, MySQLdb, mysql.connector, psycopg, psycopg2, sqlite3). Give it for other drivers.
    """

    def __init__(self, *, queue: str = DEFAULT_QUEUE, connection: Callable[[], Any] | None = None,
                 table: str = DEFAULT_TABLE, cron_table: str = DEFAULT_CRON_TABLE, dialect: str | None = None):
        self.queue = _checked_text('queue', queue, QUEUE_MAX)
        self.connection = connection
        self.table = _identifier(table, len(RESULT_SUFFIX + '_expires'))
        self.cron_table = _identifier(cron_table)
        self.dialect = _dialect_named(dialect) if dialect is not None else None
        self.tasks: dict[str, Task] = {}
        self.crons: dict[str, Cron] = {}
        self._statements: dict[tuple, str] = {}

    def init(self, queue: str | None = None, *, connection: Callable[[], Any] | None = None,
             table: str | None = None, cron_table: str | None = None, dialect: str | None = None) -> None:
        """Set the default queue, the connection provider, the table names and/or the dialect (the
        original ``mqueue.init`` took the queue only)."""
        if queue is not None:
            self.queue = _checked_text('queue', queue, QUEUE_MAX)
        if connection is not None:
            self.connection = connection
        if table is not None:
            self.table = _identifier(table, len(RESULT_SUFFIX + '_expires'))
        if cron_table is not None:
            self.cron_table = _identifier(cron_table)
        if dialect is not None:
            self.dialect = _dialect_named(dialect)

    def task(self, func: Callable | None = None, *, name: str | None = None, queue: str | None = None,
             retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF, priority: int = 0,
             result: float | bool = False, unique: bool = False, unique_while_dead: bool = False,
             timeout: float | None = None):
        """Register a function as a task; usable bare (``@task``) or with options (``@task(...)``).

        Args:
            name: the name stored in the row; default ``module.qualname`` (``tasks.mail``).
            queue: its queue; default the registry's queue at the time of enqueue.
            retries: how many times a failed attempt is retried before the task is dead.
            backoff: seconds before the first retry; each later retry waits twice as long (capped
                at MAX_BACKOFF), less up to half at random so retries spread out. 0 retries at once.
            priority: default priority of its tasks; smaller runs first.
            result: keep what it returns (JSON), or the errors it gave up with, for this many
                seconds (True: DEFAULT_RESULT_KEEP, a day), written in the commit that ends it;
                read with ``result()``. Default False: nothing kept.
            unique: key each enqueue of it by its name and arguments (``enqueue(unique=True)``):
                a call enqueued again while a task of the same call is pending or running
                inserts nothing.
            unique_while_dead: a dead task of it keeps its unique key (until retried and done,
                or purged); by default a task lets go of its key when it dies.
            timeout: seconds an attempt may run; past them the worker ends its database session
                (its writes roll back, its row locks go) and the attempt fails with TaskTimeout,
                retried as any failure. Default None: the worker's ``timeout``, if it has one.
                See docs/timeouts.md.

        Returns:
            The Task, which stays directly callable.
        """
        def register(func: Callable) -> Task:
            task = Task(func, self, name=name, queue=queue, retries=retries, backoff=backoff,
                        priority=priority, result=result, unique=unique, unique_while_dead=unique_while_dead,
                        timeout=timeout)
            known = self.tasks.get(task.name)
            if known is not None and known.func is not func:
                raise ValueError(f'task name {task.name!r} is already registered for {known.func!r}')
            self.tasks[task.name] = task
            return task
        return register(func) if func is not None else register

    def cron(self, expression: str, *, name: str | None = None, queue: str | None = None, tz: str = 'UTC',
             overlap: bool = False, retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
             priority: int = 0) -> Callable[[Callable], Task]:
        """Register a function of no arguments as a task that enqueues itself on a schedule.

        Every Worker serving the cron's queue schedules it; the cron table makes each fire enqueue
        exactly one task however many workers run. Needs ``croniter`` (imported only here).

        Args:
            expression: croniter's syntax: five fields, an optional sixth for seconds
                (``'* * * * * */10'``), or an alias such as ``'@hourly'``.
            tz: the IANA zone the expression is read in (``'Europe/Berlin'``); default UTC.
            overlap: enqueue a fire even while the previous fire's task is still pending.
            name, queue, retries, backoff, priority: as for ``task``.

        Raises:
            ValueError: a bad expression or zone; TypeError: a function that needs arguments.
        """
        def register(func: Callable) -> Task:
            schedule = Cron(expression, tz=tz, overlap=overlap)   # check before registering
            try:
                inspect.signature(func).bind()
            except TypeError as exc:
                raise TypeError(f'a cron task takes no arguments, but {func.__qualname__}() {exc}') from None
            task = self.task(func, name=name, queue=queue, retries=retries, backoff=backoff, priority=priority)
            schedule.task = task
            self.crons[task.name] = schedule
            return task
        return register

    def enqueue(self, conn: Any, name: str, args: Sequence | Mapping | None = None, *,
                queue: str | None = None, delay: float | dt.timedelta | None = None,
                eta: dt.datetime | None = None, priority: int | None = None,
                unique: str | bool | None = None) -> int:
        """Insert a task in the caller's transaction; never commits, rolls back or connects.

        The task exists once the caller commits, and never if it rolls back.

        Args:
            conn: an open DB-API connection; the caller owns its transaction.
            name: the task's registered name, e.g. ``'tasks.mail'``.
            args: a list/tuple of positional arguments or a dict of keyword arguments (JSON values).
            queue: default the task's queue if it is registered here, else the registry's queue.
            delay: seconds (or a timedelta) from the database's now until the task is due.
            eta: when the task is due, as a timezone-aware datetime (stored in UTC). Naive
                datetimes are refused: nothing is shifted by a guess at a time zone.
            priority: smaller runs first; default the task's, else 0.
            unique: a key (a string of up to 255 characters), or True for one made of the name
                and the arguments (default: the task's ``unique`` option): while a task holds
                it (pending, running, waiting to retry; dead too if its task keeps it), nothing
                is inserted and that task's id comes back. See docs/unique.md.

        Returns:
            The new task's id; with a key, an ``Enqueued`` (an int) whose ``created`` is False
            when a task already held the key and its id came back.

        Raises:
            TypeError, ValueError: bad arguments; nothing is written.
            MQueueError: a task held the key, but was gone each time its id was read (three
                times); nothing is written.
        """
        if delay is None and eta is None and self._keyed(name, unique) is False and _async_execute(conn) is None:
            # Most enqueues: one statement, sent here rather than through _run's generators, which
            # were a quarter to a third of the Python between enqueue and its statement sent raw
            # (2.5 of 8-10 µs in a tight loop; more at one enqueue per commit, where every line the
            # process runs between its waits on the database costs more).
            sql, params, dialect = self._insert_now(conn, name, _encode_args(name, args), queue, priority)
            with _cursor(conn) as cursor:
                cursor.execute(sql, params)
                return _new_id(dialect, _CursorReply(cursor))
        return _run(conn, self._enqueue_steps(conn, name, args, queue, delay, eta, priority, unique))

    async def aenqueue(self, conn: Any, name: str, args: Sequence | Mapping | None = None, *,
                       queue: str | None = None, delay: float | dt.timedelta | None = None,
                       eta: dt.datetime | None = None, priority: int | None = None,
                       unique: str | bool | None = None) -> int:
        """``enqueue`` for asyncio: in the caller's transaction on an asyncio connection (psycopg 3's
        AsyncConnection, asyncpg, aiomysql, aiosqlite), never committing; the same statements.
        Given a DB-API connection (an async task's own, say), it runs them on it as ``enqueue``
        does. See docs/asyncio.md."""
        return await _arun(conn, self._enqueue_steps(conn, name, args, queue, delay, eta, priority, unique))

    def _enqueue_steps(self, conn: Any, name: str, args: Any, queue: str | None, delay: Any, eta: Any,
                       priority: int | None, unique: str | bool | None) -> Generator[tuple, _Reply, int]:
        """What ``enqueue`` sends, as a generator of statements: it yields (sql, params), is sent
        each one's _Reply, and returns the task's id; _run drives it on a DB-API connection,
        _arun on an asyncio one."""
        encoded = _encode_args(name, args)
        key = self._unique_key(name, encoded, unique)
        if key is not None:
            return (yield from self._insert_unique(conn, name, encoded, key, queue, delay, eta, priority))
        return (yield from self._insert(conn, name, [encoded], queue, delay, eta, priority))

    def enqueue_many(self, conn: Any, name: str, calls: Iterable[Sequence | Mapping | None], *,
                     queue: str | None = None, delay: float | dt.timedelta | None = None,
                     eta: dt.datetime | None = None, priority: int | None = None,
                     unique: bool | None = None) -> int:
        """Insert many tasks of one name in the caller's transaction, a few statements for all;
        never commits. Every call is checked before anything is written.

        Args:
            calls: the args of each task: a list/tuple (positional) or a dict (keyword arguments).
            unique: True: each task keyed by its name and arguments, as ``enqueue``'s
                ``unique=True`` (default: the task's ``unique`` option); such tasks are inserted
                one statement each, and a call whose key a task holds (or an earlier call of
                the same list took) inserts nothing.
            The other options are ``enqueue``'s, applied to every task.

        Returns:
            How many tasks were inserted.
        """
        return _run(conn, self._enqueue_many_steps(conn, name, calls, queue, delay, eta, priority, unique))

    async def aenqueue_many(self, conn: Any, name: str, calls: Iterable[Sequence | Mapping | None], *,
                            queue: str | None = None, delay: float | dt.timedelta | None = None,
                            eta: dt.datetime | None = None, priority: int | None = None,
                            unique: bool | None = None) -> int:
        """``enqueue_many`` for asyncio, as ``aenqueue`` is ``enqueue``'s."""
        return await _arun(conn, self._enqueue_many_steps(conn, name, calls, queue, delay, eta, priority, unique))

    def _enqueue_many_steps(self, conn: Any, name: str, calls: Iterable[Any], queue: str | None, delay: Any,
                            eta: Any, priority: int | None, unique: bool | None) -> Generator[tuple, _Reply, int]:
        if isinstance(unique, str):
            raise TypeError('enqueue_many takes unique=True (a key per call, from its arguments), not one key for all')
        encoded = [_encode_args(name, args) for args in calls]
        keys = [self._unique_key(name, one, unique) for one in encoded]
        if keys and keys[0] is not None:
            created = 0
            for one, key in zip(encoded, keys):
                created += (yield from self._insert_unique(conn, name, one, key, queue, delay, eta, priority)).created
            return created
        yield from self._insert(conn, name, encoded, queue, delay, eta, priority)
        return len(encoded)

    def _keyed(self, name: str, unique: str | bool | None) -> str | bool:
        """enqueue's unique option as given, else its task's (False: no key)."""
        if unique is None:
            task = self.tasks.get(name)
            return task is not None and task.unique
        return unique

    def _unique_key(self, name: str, encoded: str, unique: str | bool | None) -> str | None:
        """The key a task is enqueued with: given, made of its name and arguments (True, or its
        task's ``unique`` option), or None."""
        unique = self._keyed(name, unique)
        if unique is False:
            return None
        if unique is True:
            key = f'{name}:{encoded}'
            return key if len(key) <= UNIQUE_MAX else f'{name}:sha256:{hashlib.sha256(encoded.encode()).hexdigest()}'
        return _checked_key(unique)

    def _insert_unique(self, conn: Any, name: str, encoded: str, key: str, queue: str | None, delay: Any, eta: Any,
                       priority: int | None) -> Generator[tuple, _Reply, Enqueued]:
        """INSERT a task with a unique key, unless a task holds the key: then that task's id. If
        the holder ends between the two statements, the insert is tried again. (Statements, as
        _enqueue_steps yields them.)"""
        dialect, queue, priority, eta_utc, delay_us, notify = self._placed(conn, name, queue, delay, eta, priority)
        for _ in range(3):
            if dialect.share_lock:
                holder = (yield self.sql(SQL_KEY_HOLDER, dialect), [key]).row
                if holder is not None:
                    return Enqueued(holder[0], False)
            reply = yield (self.sql(SQL_ENQUEUE_UNIQUE, dialect),
                           [encoded, eta_utc, delay_us, name, queue, priority, key, *notify])
            if dialect.enqueue_tail:
                new_id = reply.row[0]   # NULL: nothing inserted
            else:
                new_id = reply.lastrowid if reply.rowcount == 1 else None
            if new_id is not None:
                return Enqueued(new_id, True)
            holder = (yield self.sql(SQL_KEY_HOLDER, dialect), [key]).row
            if holder is None and dialect.share_lock:
                holder = (yield self.sql(SQL_KEY_HOLDER_LATEST, dialect), [key]).row
            if holder is not None:
                return Enqueued(holder[0], False)
        raise MQueueError(f'a task holds unique key {key!r}, but it was gone each time its id was read; nothing was '
                          'inserted: enqueue it again')

    def _placed(self, conn: Any, name: str, queue: str | None, delay: Any, eta: Any, priority: int | None) -> tuple:
        """What an insert of tasks of this name sends besides their args: the dialect, queue,
        priority, due time (UTC, or a delay in microseconds) and the NOTIFY's payload, if any."""
        queue, priority = self.placement(name, queue, priority)
        eta_utc, delay_us = _due(delay, eta)
        dialect = self.dialect_of(conn)
        if eta_utc is not None:
            eta_utc = dialect.stamp(eta_utc)
        return dialect, queue, priority, eta_utc, delay_us, (f'{self.table}:{queue}',) if dialect.notify else ()

    def _insert(self, conn: Any, name: str, encoded: list[str], queue: str | None, delay: Any, eta: Any,
                priority: int | None) -> Generator[tuple, _Reply, int | None]:
        """INSERT tasks of one name, a statement per ENQUEUE_MANY_ROWS (or _BYTES); the first's id.
        (Statements, as _enqueue_steps yields them.)"""
        if len(encoded) == 1 and delay is None and eta is None:   # (none of the loop's work)
            sql, params, dialect = self._insert_now(conn, name, encoded[0], queue, priority)
            return _new_id(dialect, (yield sql, params))
        dialect, queue, priority, eta_utc, delay_us, notify = self._placed(conn, name, queue, delay, eta, priority)
        first, start = None, 0
        while start < len(encoded):
            end, size = start, 0
            while end < len(encoded) and end - start < ENQUEUE_MANY_ROWS and (
                    end == start or size + len(encoded[end]) <= ENQUEUE_MANY_BYTES):
                size += len(encoded[end])
                end += 1
            if dialect.enqueue_array and end - start > 1:
                reply = yield (self.sql(SQL_ENQUEUE_ARRAY, dialect),
                               [eta_utc, delay_us, name, queue, priority, encoded[start:end], *notify])
            else:
                reply = yield (self.sql(SQL_ENQUEUE, dialect, rows=end - start),
                               [*(value for args in encoded[start:end]
                                  for value in (args, eta_utc, delay_us, name, queue, priority)), *notify])
            if first is None:
                first = reply.row[0] if dialect.enqueue_tail else reply.lastrowid
            start = end
        return first

    def _insert_now(self, conn: Any, name: str, encoded: str, queue: str | None,
                    priority: int | None) -> tuple[str, list, Dialect]:
        """The statement that inserts one task due at once (most enqueues), its parameters, and
        its dialect, which says how the new id comes back."""
        dialect, queue, priority, _, _, notify = self._placed(conn, name, queue, None, None, priority)
        return self.sql(SQL_ENQUEUE_NOW, dialect), [encoded, name, queue, priority, *notify], dialect

    def placement(self, name: str, queue: str | None = None, priority: int | None = None) -> tuple[str, int]:
        """The queue and priority a task of this name is enqueued with: as given, else its
        task's, else the registry's queue and 0. Checked: raises as ``enqueue`` would."""
        _checked_text('name', name, NAME_MAX)
        known = self.tasks.get(name)
        queue = _checked_text('queue', queue or (known and known.queue) or self.queue, QUEUE_MAX)
        return queue, _whole_number('priority', priority if priority is not None else known.priority if known else 0,
                                    *PRIORITY_RANGE)

    # Operating: each in the caller's transaction, like enqueue (reads lock nothing; the caller
    # commits the writes). The CLI's status, dead, retry, cancel and purge are these.

    def queue_stats(self, conn: Any, queue: str | None = None, *, cap: int | None = None) -> list[QueueStats]:
        """Per queue (those with rows, or just ``queue``): tasks ready, scheduled, running and dead,
        and how long the oldest ready task has waited. A plain read: it never waits on a worker.
        With ``cap``, on MySQL and SQLite each count reads index ranges and stops at cap (a count
        of cap means at least that many), for tables too large to count in one scan (the
        dashboard passes 10,000); PostgreSQL, whose claim index leaves the dead out, still counts
        exactly in one scan."""
        dialect = self.dialect_of(conn)
        if cap is not None:
            _whole_number('cap', cap, 1)
        with _cursor(conn) as cursor:
            cursor.execute(self.sql(SQL_NOW, dialect))
            now = cursor.fetchone()[0]
            if cap is not None and dialect.counts_by_range:
                rows = self._capped_stats(cursor, dialect, now, queue, cap)
            else:
                statement, params = _filtered(SQL_QUEUE_STATS, queue=queue)
                cursor.execute(self.sql(statement + SQL_QUEUE_STATS_GROUP, dialect), [now] * 3 + params)
                rows = cursor.fetchall()
        now = _utc(now)
        return [QueueStats(name, ready, scheduled, running, dead,
                           max(0.0, (now - _utc(oldest)).total_seconds()) if oldest is not None else 0.0)
                for name, ready, scheduled, running, dead, oldest in rows]

    def _capped_stats(self, cursor: Any, dialect: Dialect, now: Any, queue: str | None, cap: int) -> list[tuple]:
        """queue_stats's rows from index ranges: a statement per queue and priority in use, and
        one more per queue; each count stops at cap."""
        rows = []
        for name in self._queues(cursor, dialect, queue):
            ready, scheduled, oldest = 0, 0, None
            for priority in self._priorities_in_use(cursor, dialect, name):
                cursor.execute(self.sql(SQL_COUNT_PAIR, dialect), (name, priority, now, cap) * 2 + (name, priority, now))
                pair_ready, pair_scheduled, first = cursor.fetchone()
                ready, scheduled = min(cap, ready + pair_ready), min(cap, scheduled + pair_scheduled)
                if first is not None and (oldest is None or _utc(first) < _utc(oldest)):
                    oldest = first
            cursor.execute(self.sql(SQL_COUNT_QUEUE, dialect), (name, cap, name, cap))
            running, dead = cursor.fetchone()
            if ready or scheduled or running or dead:
                rows.append((name, ready, scheduled, running, dead, oldest))
        return rows

    def _queues(self, cursor: Any, dialect: Dialect, queue: str | None) -> list[str]:
        """Just ``queue`` if given, else the queues with rows (Dialect.list_queues), in order."""
        if queue is not None:
            return [queue]
        cursor.execute(self.sql(dialect.list_queues, dialect))
        return [row[0] for row in cursor.fetchall()]

    def _priorities_in_use(self, cursor: Any, dialect: Dialect, queue: str) -> list[int]:
        """The priorities of a queue's rows that are not dead, smallest first: one index dive each."""
        found, priority = [], PRIORITY_RANGE[0] - 1
        while True:   # (ends: each priority found is above the last)
            cursor.execute(self.sql(SQL_NEXT_PRIORITY, dialect), (queue, priority))
            priority = cursor.fetchone()[0]
            if priority is None:
                return found
            found.append(priority)

    def throughput(self, conn: Any, *, queue: str | None = None, minutes: int = 60) -> list[Throughput]:
        """Tasks ended per minute (of this queue), the last ``minutes`` of them by the database's
        clock, oldest first, every minute listed: as the workers count them, in a table of their
        own, every few seconds (COUNTS_EVERY), so the current minute may lack the last seconds.
        Empty if the table is missing (tables made before it existed: ``mqueue init-db`` adds it)."""
        _whole_number('minutes', minutes, 1, COUNTS_KEPT // 60)
        dialect = self.dialect_of(conn)
        with _cursor(conn) as cursor:
            cursor.execute(dialect.has_table, (self.counts_table,))
            if not cursor.fetchone()[0]:
                return []
            cursor.execute(self.sql(SQL_NOW, dialect))
            first = _utc(cursor.fetchone()[0]).replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes - 1)
            statement, params = _filtered(SQL_THROUGHPUT, queue=queue)
            cursor.execute(self.sql(statement + SQL_THROUGHPUT_GROUP, dialect),
                           [dialect.stamp(first.replace(tzinfo=None)), *params])
            counted = {_utc(minute): (int(done), int(failed)) for minute, done, failed in cursor.fetchall()}
        return [Throughput(minute, *counted.get(minute, (0, 0)))
                for minute in (first + dt.timedelta(minutes=n) for n in range(minutes))]

    def past_timeout(self, conn: Any, queue: str | None = None, limit: int = 100) -> list[PastTimeout]:
        """The running tasks past their timeout (of this queue), the longest overdue first: those
        their worker could not end (it hangs, is paused, or died and a rescue has yet to bring its
        task back). A plain read."""
        dialect = self.dialect_of(conn)
        statement, params = _filtered(SQL_PAST_TIMEOUT, queue=queue)
        with _cursor(conn) as cursor:
            cursor.execute(self.sql(SQL_NOW, dialect))
            now = cursor.fetchone()[0]
            cursor.execute(self.sql(statement + SQL_PAST_TIMEOUT_ORDER, dialect),
                           [now, *params, _whole_number('limit', limit, 1)])
            rows = cursor.fetchall()
        now = _utc(now)
        return [PastTimeout(task_id, queue, name, worker, _utc(claimed_at), _utc(deadline),
                            (now - _utc(deadline)).total_seconds())
                for task_id, queue, name, worker, claimed_at, deadline in rows]

    def dead_tasks(self, conn: Any, *, queue: str | None = None, name: str | None = None,
                   limit: int = 100, before: DeadTask | None = None) -> list[DeadTask]:
        """Dead tasks, most recently dead first, with their last error (a plain read); ``before``:
        the last one of the page before (keyset pagination)."""
        _whole_number('limit', limit, 1)
        dialect = self.dialect_of(conn)
        statement, params = _filtered(SQL_DEAD_TASKS, queue=queue, name=name)
        if before is not None:   # (its key as the database gave it, where the caller kept it)
            key = before.key if before.key is not None else dialect.stamp(
                before.dead_at.astimezone(dt.timezone.utc).replace(tzinfo=None))
            statement, params = statement + SQL_DEAD_BEFORE, [*params, key, key, before.id]
        with _cursor(conn) as cursor:
            cursor.execute(self.sql(statement + SQL_DEAD_TASKS_ORDER, dialect), [*params, limit])
            rows = cursor.fetchall()
        return [DeadTask(task_id, queue_, name_, args, attempts, _utc(dead_at), last_error or '', dead_at)
                for task_id, queue_, name_, args, attempts, dead_at, last_error in rows]

    def scheduled_tasks(self, conn: Any, *, queue: str | None = None, name: str | None = None,
                        limit: int = 100, after: ScheduledTask | None = None) -> list[ScheduledTask]:
        """Tasks waiting for a later time (delayed, or waiting to retry: those have an error), the
        soonest due first (a plain read); ``after``: the last one of the page before."""
        _whole_number('limit', limit, 1)
        dialect = self.dialect_of(conn)
        with _cursor(conn) as cursor:
            cursor.execute(self.sql(SQL_NOW, dialect))
            now = cursor.fetchone()[0]
            pairs = [(q, priority) for q in self._queues(cursor, dialect, queue)
                     for priority in self._priorities_in_use(cursor, dialect, q)]
            after_sql, after_params = '', []
            if after is not None:   # (its key as the database gave it, where the caller kept it)
                key = after.key if after.key is not None else dialect.stamp(
                    after.eta.astimezone(dt.timezone.utc).replace(tzinfo=None))
                after_sql, after_params = SQL_SCHEDULED_AFTER, [key, key, after.id]
            if len(pairs) > PROBE_BLOCKS:
                statement, params = _filtered(SQL_SCHEDULED_TASKS, queue=queue, name=name)
                cursor.execute(self.sql(statement + after_sql + SQL_SCHEDULED_ORDER, dialect),
                               [now, *params, *after_params, limit])
            elif pairs:
                block, params = _filtered(SQL_SCHEDULED_PAIR, name=name)
                block = self.sql(block + after_sql + SQL_SCHEDULED_ORDER, dialect)
                cursor.execute(dialect.union([block] * len(pairs)) + self.sql(SQL_SCHEDULED_ORDER, dialect),
                               [*(p for pair in pairs for p in (*pair, now, *params, *after_params, limit)), limit])
            rows = cursor.fetchall() if pairs else []
        return [ScheduledTask(task_id, queue_, name_, args, attempts, _utc(eta), last_error, eta)
                for task_id, queue_, name_, args, attempts, eta, last_error in rows]

    def running_tasks(self, conn: Any, *, queue: str | None = None, limit: int = 100) -> list[RunningTask]:
        """Claimed tasks, the longest running first, with their worker (a plain read of the
        claimed index): a dead worker's too, until a rescue brings them back."""
        _whole_number('limit', limit, 1)
        dialect = self.dialect_of(conn)
        statement, params = _filtered(SQL_RUNNING_TASKS, queue=queue)
        with _cursor(conn) as cursor:
            cursor.execute(self.sql(SQL_NOW, dialect))
            now = _utc(cursor.fetchone()[0])
            cursor.execute(self.sql(statement + SQL_RUNNING_ORDER, dialect), [*params, limit])
            rows = cursor.fetchall()
        return [RunningTask(task_id, queue_, name, worker, _utc(claimed_at), max(0.0, (now - _utc(claimed_at)).total_seconds()),
                            _utc_or_none(deadline), attempts)
                for task_id, queue_, name, worker, claimed_at, deadline, attempts in rows]

    def delete_dead(self, conn: Any, ids: Iterable[int]) -> int:
        """Delete these tasks if they are dead (one retried meanwhile is left alone); never waits
        on a worker. Returns how many."""
        return self._locked_by_ids(conn, SQL_PURGE_DEAD, [int(task_id) for task_id in ids])

    def run_now(self, conn: Any, ids: Iterable[int]) -> int:
        """Make these waiting tasks (delayed, or waiting to retry) due at once, their attempts
        kept; a task a worker holds, or no longer waiting (due already: it keeps its place), is
        left alone: never waits on a worker. Returns how many."""
        return self._locked_by_ids(conn, SQL_RUN_NOW, [int(task_id) for task_id in ids], lock=SQL_LOCK_WAITING)

    def retry_dead(self, conn: Any, ids: Iterable[int] | None = None, *, queue: str | None = None,
                   name: str | None = None) -> int:
        """Bring dead tasks back, due now with a fresh count of attempts, in the caller's transaction.

        Args:
            ids: only these tasks; queue, name: only dead tasks of this queue / task name.
            With no filter, every dead task comes back.

        Returns:
            How many tasks came back.
        """
        if ids is None or queue is not None or name is not None:
            found = self._find(conn, *_filtered(SQL_FIND_DEAD, queue=queue, name=name))
            ids = found if ids is None else sorted(set(found) & {int(i) for i in ids})
        return self._locked_by_ids(conn, SQL_RETRY_DEAD, [int(i) for i in ids], SQL_DELETE_RESULTS)

    def cancel(self, conn: Any, task_id: int) -> bool:
        """Delete a task that no worker is running: pending (due, scheduled, waiting to retry) or
        dead. Never waits on a worker. Returns False if there is no such task: it finished, was
        never enqueued (or not yet committed), or a worker is running it (its attempt ends as it
        ends; cancel it again if it is retried)."""
        dialect, task_id = self.dialect_of(conn), int(task_id)
        with _cursor(conn) as cursor:
            for look in (SQL_CANCEL_FIND, SQL_CANCEL_LOCK):
                cursor.execute(self.sql(look, dialect), (task_id,))
                if cursor.fetchone() is None:
                    return False
            cursor.execute(self.sql(SQL_CANCEL, dialect), (task_id,))
            return cursor.rowcount == 1

    def purge_dead(self, conn: Any, older_than: float | dt.timedelta, *, queue: str | None = None,
                   name: str | None = None) -> int:
        """Delete dead tasks that died more than ``older_than`` (seconds or a timedelta) ago, by
        the database's clock; 0 deletes every dead task. Dead tasks are kept until purged.

        Returns:
            How many were deleted.
        """
        age = int(_seconds('older_than', older_than) * 1e6)
        statement, params = _filtered(SQL_FIND_DEAD_BEFORE, queue=queue, name=name)
        return self._locked_by_ids(conn, SQL_PURGE_DEAD, self._find(conn, statement, [-age, *params]))

    def result(self, conn: Any, task_id: int) -> Result:
        """What became of a task, read in the caller's transaction: ``pending`` (waiting, or
        waiting to retry), ``running`` (claimed), ``dead``, ``succeeded`` (with the value it
        returned, if it keeps its result: ``@task(result=...)``), or ``unknown``: no such task
        (never committed, or rolled back), or one that ended without keeping a result, or whose
        result expired. A result exists only if the task's own writes committed: both go in one
        commit."""
        task_id = _whole_number('task_id', task_id, 1)
        dialect = self.dialect_of(conn)
        with _cursor(conn) as cursor:
            cursor.execute(self.sql(SQL_TASK_STATE, dialect), (task_id,))
            row = cursor.fetchone()
            if row is not None:
                dead_at, claimed_at, attempts, enqueued_at, started_at, errors, last_error, name, args = row
                status = 'dead' if dead_at is not None else 'running' if claimed_at is not None else 'pending'
                found = _errors_of(errors) or ([{'attempt': attempts, 'at': None, 'type': last_error.split(':', 1)[0],
                                                 'error': last_error}] if last_error else [])   # (failed before 0.4)
                return Result(task_id, status, None, found, attempts, _utc_or_none(enqueued_at),
                              _utc_or_none(started_at), _utc_or_none(dead_at), name, _decoded_or_none(args))
            cursor.execute(self.sql(SQL_RESULT, dialect), (task_id,))
            row = cursor.fetchone()
        if row is None:
            return Result(task_id, 'unknown', None, [], 0, None, None, None)
        status, value, errors, attempts, enqueued_at, started_at, finished_at, name = row
        return Result(task_id, status, json.loads(value) if value is not None else None, _errors_of(errors), attempts,
                      _utc_or_none(enqueued_at), _utc_or_none(started_at), _utc_or_none(finished_at), name)

    def wait_for_result(self, connect: Callable[[], Any] | str, task_id: int, timeout: float) -> Result:
        """``result()``, once the task has ended (succeeded, dead or unknown) or ``timeout``
        seconds have passed (then as it is: pending or running). Reads on a connection of its own
        (``connect``: a callable returning one, or a URL), in autocommit mode, so that each look
        sees what has committed since: polling, every 5 ms at first, then less often, up to every
        0.25 s; on PostgreSQL the result's NOTIFY ends each wait early."""
        timeout = _seconds('timeout', timeout)
        conn = (connect_url(connect) if isinstance(connect, str) else connect)()
        try:
            dialect = self.dialect_of(conn)
            dialect.take_over(conn)
            dialect.idle(conn, True)   # autocommit (SQLite: outside BEGIN it is already)
            if dialect.notify:
                with _cursor(conn) as cursor:
                    cursor.execute(f'LISTEN {RESULT_CHANNEL}')
            deadline, pause = time.monotonic() + timeout, 0.005
            while True:
                found = self.result(conn, task_id)
                left = deadline - time.monotonic()
                if found.status in ('succeeded', 'dead', 'unknown') or left <= 0:
                    return found
                if dialect.notify:
                    _await_notification(conn, min(pause, left))
                else:
                    time.sleep(min(pause, left))
                pause = min(pause * 2, 0.25)
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def purge_results(self, conn: Any, limit: int | None = None) -> int:
        """Delete expired results, RESULTS_PURGE_MAX per statement, up to ``limit`` (default: all of
        them); how many. Workers delete a batch of them every RESULTS_PURGE_EVERY seconds."""
        dialect, count = self.dialect_of(conn), 0
        with _cursor(conn) as cursor:
            while limit is None or count < limit:
                want = RESULTS_PURGE_MAX if limit is None else min(RESULTS_PURGE_MAX, limit - count)
                cursor.execute(self.sql(SQL_FIND_EXPIRED, dialect), (want,))
                ids = [row[0] for row in cursor.fetchall()]
                if ids:
                    cursor.execute(self.sql(SQL_DELETE_RESULTS, dialect, ids=len(ids)), ids)
                    count += len(ids)
                if len(ids) < want:
                    break
        return count

    def exists(self, conn: Any, task_id: int) -> bool:
        """Whether a task is in the table: pending, running or dead (a plain read; the CLI's
        ``cancel`` tells a running task from a finished one by it)."""
        return bool(self._find(conn, *_filtered(SQL_FIND, id=int(task_id))))

    def _find(self, conn: Any, statement: str, params: list) -> list[int]:
        """The ids a plain read finds."""
        with _cursor(conn) as cursor:
            cursor.execute(self.sql(statement, self.dialect_of(conn)), params)
            return [row[0] for row in cursor.fetchall()]

    def _locked_by_ids(self, conn: Any, statement: str, ids: list[int], then: str | None = None,
                     lock: str = SQL_LOCK_DEAD) -> int:
        """Lock the tasks among ids that ``lock`` finds (the dead, or the waiting; skipping rows a
        worker holds), run a statement on them (and ``then`` another), IDS_PER_STATEMENT at a
        time; the rows the first changed."""
        dialect, count = self.dialect_of(conn), 0
        with _cursor(conn) as cursor:
            for start in range(0, len(ids), IDS_PER_STATEMENT):
                chunk = ids[start:start + IDS_PER_STATEMENT]
                cursor.execute(self.sql(lock, dialect, ids=len(chunk)), chunk)
                locked = [row[0] for row in cursor.fetchall()]
                if locked:
                    cursor.execute(self.sql(statement, dialect, ids=len(locked)), locked)
                    count += cursor.rowcount
                    if then:
                        cursor.execute(self.sql(then, dialect, ids=len(locked)), locked)
        return count

    @property
    def result_table(self) -> str:
        return self.table + RESULT_SUFFIX

    @property
    def counts_table(self) -> str:
        """The throughput counts' table: the task table's name plus ``_counts``."""
        return self.table + COUNTS_SUFFIX

    def schema(self, dialect: str = 'mysql') -> str:
        """The CREATE TABLE statements for this registry's table names, for 'mysql', 'postgresql'
        or 'sqlite'."""
        return _dialect_named(dialect).schema.format(task=self.table, cron=self.cron_table, result=self.result_table,
                                                     counts=self.counts_table)

    def create_tables(self, conn: Any) -> None:
        """Run ``schema()`` for the connection's database on it (IF NOT EXISTS: safe to repeat).
        Never commits: PostgreSQL and SQLite keep DDL in the caller's transaction."""
        with _cursor(conn) as cursor:
            for statement in self.schema(self.dialect_of(conn).name).split(';\n'):
                if statement.strip():
                    cursor.execute(statement)

    def queues(self) -> list[str]:
        """The queues a worker serves by default: the registry's and every registered task's."""
        return sorted({self.queue} | {t.queue for t in self.tasks.values() if t.queue})

    def dialect_of(self, conn: Any) -> Dialect:
        """The registry's dialect if it was given one, else the one the connection's driver tells."""
        return self.dialect or _dialect_of(conn)

    def sql(self, statement: str, dialect: Dialect, **lists: int) -> str:
        """One of the named statements (``SQL_...``) as this registry runs it on a database: its
        table names, the dialect's fragments and placeholders, and n placeholders per list
        (``ids=3``). Cached; the Worker, the CLI and the tests' query plans read statements here."""
        key = (statement, dialect.name, self.table, self.cron_table, *lists.items())
        text = self._statements.get(key)
        if text is None:
            if len(self._statements) > 10_000:
                self._statements.clear()
            text = self._statements[key] = dialect.render(statement, self.table, self.cron_table, lists)
        return text


class Enqueued(int):
    """The id ``enqueue(..., unique=...)`` returns: ``created`` is True if this call inserted the
    task, False if a task already held the key and this is its id."""
    created: bool

    def __new__(cls, task_id: int, created: bool = True) -> Enqueued:
        self = super().__new__(cls, task_id)
        self.created = created
        return self

    def __reduce__(self) -> tuple:
        return Enqueued, (int(self), self.created)


class Task:
    """A registered function. Call it to run it here; ``enqueue`` it to run it in a worker."""

    def __init__(self, func: Callable, registry: Registry, *, name: str | None = None,
                 queue: str | None = None, retries: int = DEFAULT_RETRIES,
                 backoff: float = DEFAULT_BACKOFF, priority: int = 0, result: float | bool = False,
                 unique: bool = False, unique_while_dead: bool = False, timeout: float | None = None):
        if not callable(func):
            raise TypeError(f'a task must be a function, not {func!r}')
        self.func = func
        self.registry = registry
        self.name = _checked_text('name', name or f'{func.__module__}.{func.__qualname__}', NAME_MAX)
        self.queue = _checked_text('queue', queue, QUEUE_MAX) if queue is not None else None
        self.retries = _whole_number('retries', retries, 0, MAX_RETRIES)
        self.backoff = _seconds('backoff', backoff, high=MAX_BACKOFF)
        self.priority = _whole_number('priority', priority, *PRIORITY_RANGE)
        # seconds its result is kept; None: none kept
        self.result = (DEFAULT_RESULT_KEEP if result is True else None if result is False
                       else _seconds('result', result, positive=True))
        self.unique, self.unique_while_dead = bool(unique), bool(unique_while_dead)
        self.timeout = None if timeout is None else _seconds('timeout', timeout, positive=True)
        self.signature = inspect.signature(func)
        self._fits: dict[int | tuple, str | None] = {}
        functools.update_wrapper(self, func)

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def check_call(self, call: list | dict) -> str | None:
        """Why stored args (a list or a dict) cannot be passed to the function, or None. Whether
        they fit depends only on their shape (how many, which names), so the answer is cached."""
        shape = len(call) if isinstance(call, list) else tuple(call)
        if shape not in self._fits:
            if len(self._fits) > 1000:   # a bound on shapes kept; they are few in practice
                self._fits.clear()
            try:
                self.signature.bind(*call) if isinstance(call, list) else self.signature.bind(**call)
                self._fits[shape] = None
            except TypeError as exc:
                self._fits[shape] = str(exc)
        return self._fits[shape]

    def __repr__(self) -> str:
        return f'<mqueue.Task {self.name}>'

    def enqueue(self, *args, **kwargs) -> int:
        """Enqueue a call with these arguments on the ambient connection (see ``enqueue_with``)."""
        return self.enqueue_with(args, kwargs)

    def enqueue_with(self, args: Sequence = (), kwargs: Mapping | None = None, *, connection: Any = None,
                     delay: float | dt.timedelta | None = None, eta: dt.datetime | None = None,
                     priority: int | None = None, queue: str | None = None, unique: str | bool | None = None) -> int:
        """Enqueue a call with scheduling options; returns the task id.

        The arguments are checked against the function's signature now, not when it runs. The
        connection is, in order: ``connection``; inside a running task, that task's transaction;
        the provider given to ``init(connection=...)``. Options are those of ``Registry.enqueue``.
        """
        call = _encode_call(self, tuple(args), dict(kwargs or {}))
        connection = _ambient_connection(self.registry) if connection is None else connection
        return self.registry.enqueue(connection, self.name, call, queue=queue, delay=delay, eta=eta,
                                     priority=priority, unique=unique)

    async def aenqueue(self, *args, **kwargs) -> int:
        """``enqueue`` for asyncio (see ``aenqueue_with``)."""
        return await self.aenqueue_with(args, kwargs)

    async def aenqueue_with(self, args: Sequence = (), kwargs: Mapping | None = None, *, connection: Any = None,
                            delay: float | dt.timedelta | None = None, eta: dt.datetime | None = None,
                            priority: int | None = None, queue: str | None = None,
                            unique: str | bool | None = None) -> int:
        """``enqueue_with`` on an asyncio connection (``Registry.aenqueue``); the ambient one is
        that of ``init(connection=...)``, or inside a running task its own (a DB-API one)."""
        call = _encode_call(self, tuple(args), dict(kwargs or {}))
        connection = _ambient_connection(self.registry) if connection is None else connection
        return await self.registry.aenqueue(connection, self.name, call, queue=queue, delay=delay, eta=eta,
                                            priority=priority, unique=unique)


class _TaskContextFields(NamedTuple):
    """TaskContext's fields (its connection field may hold the task's _Savepoint, not yet taken)."""
    id: int
    name: str
    queue: str
    retries: int            # earlier attempts of this task: 0 on the first run
    eta: dt.datetime        # when this attempt was due (UTC); for a cron's task, its fire
    connection: Any         # the DB-API connection of the transaction the task runs in
    worker: Any             # the Worker running it


class TaskContext(_TaskContextFields):
    """What ``current()`` returns inside a running task (a named tuple: cheap on the hot path).
    Its ``connection`` takes the task's savepoint the first time it is read (see _Savepoint)."""
    __slots__ = ()

    @property
    def connection(self) -> Any:
        connection = super().connection
        return connection.take() if type(connection) is _Savepoint else connection

    def __getitem__(self, index: Any) -> Any:   # (as a tuple, too: context[5], unpacking, _asdict())
        if type(index) is slice:
            return tuple(self)[index]
        value = tuple.__getitem__(self, index)
        return value.take() if type(value) is _Savepoint else value

    def __iter__(self) -> Iterator[Any]:
        for value in tuple.__iter__(self):
            yield value.take() if type(value) is _Savepoint else value


class _Savepoint:
    """A task's savepoint, taken when the task first reads its connection, not before: a task
    that never touches the batch's transaction has nothing in it to roll back, and costs it no
    statement (a savepoint is most of what a batch sends). Only where the worker's own connection
    is reachable through ``current().connection`` alone; with a transaction hook (an ORM session
    hands it out), an open connection the caller also holds, or on a Galera cluster, every task
    takes its savepoint before it starts (``Worker._eager_savepoints``). Like the connection, it
    serves the task's thread (one reading it from two threads at once would need a lock)."""
    __slots__ = ('conn', 'cursor', 'index', 'taken', 'batch')

    def __init__(self, conn: Any, cursor: Any, index: int, batch: list[int]):
        self.conn, self.cursor, self.index, self.taken, self.batch = conn, cursor, index, False, batch

    def take(self) -> Any:
        if not self.taken:
            self.cursor.execute(SQL_SAVEPOINT.format(n=self.index))
            self.taken = True
            self.batch.append(self.index)   # (the batch's savepoints: _check_transaction releases the first)
        return self.conn

    def __repr__(self) -> str:
        return f'<savepoint mqueue_{self.index} of {self.conn!r}{"" if self.taken else ", not yet taken"}>'


class QueueStats(NamedTuple):
    """One queue's tasks, as ``queue_stats`` counts them."""
    queue: str
    ready: int              # due now, waiting for a worker
    scheduled: int          # due later: delayed, or waiting to retry
    running: int            # claimed by a worker, until the attempt ends (or a dead worker's is rescued)
    dead: int               # gave up; kept until retried or purged
    latency: float          # seconds the oldest ready task has been due; 0.0 when none is ready


class Throughput(NamedTuple):
    """One minute of ``throughput``."""
    minute: dt.datetime     # its start (UTC)
    done: int               # tasks that succeeded
    failed: int             # attempts that failed (to be retried, or dead)


class PastTimeout(NamedTuple):
    """A running task past its timeout, as ``past_timeout`` lists it."""
    id: int
    queue: str
    name: str
    worker: str | None      # who holds it: host:pid:thread
    claimed_at: dt.datetime  # when its attempt was claimed (UTC)
    deadline: dt.datetime   # by when it should have ended (UTC): its timeout after it could start
    overdue: float          # seconds since then


class DeadTask(NamedTuple):
    """A dead task, as ``dead_tasks`` lists it."""
    id: int
    queue: str
    name: str
    args: str               # the stored JSON
    attempts: int
    dead_at: dt.datetime    # UTC
    error: str              # the last failure: type, message, traceback
    key: Any = None         # dead_at as the database gave it (a page after this one starts after it)


class ScheduledTask(NamedTuple):
    """A task waiting for a later time, as ``scheduled_tasks`` lists it."""
    id: int
    queue: str
    name: str
    args: str               # the stored JSON
    attempts: int           # attempts begun: more than 0 when it waits to retry
    eta: dt.datetime        # when it is due (UTC)
    error: str | None       # the last failure, if it waits to retry
    key: Any = None         # its place in the list as the database orders it (a page after it starts after this)


class RunningTask(NamedTuple):
    """A claimed task, as ``running_tasks`` lists it."""
    id: int
    queue: str
    name: str
    worker: str | None      # host:pid:thread
    claimed_at: dt.datetime  # when the attempt was claimed (UTC)
    running_for: float      # seconds since then
    deadline: dt.datetime | None   # when it times out, if it has a timeout (UTC)
    attempts: int           # attempts begun, this one included


class Result(NamedTuple):
    """What became of a task, as ``result()`` reads it."""
    id: int
    status: str                         # pending, running, succeeded, dead or unknown
    value: Any                          # what it returned (succeeded, with a result kept), else None
    errors: list[dict]                  # its failed attempts': attempt, at (UTC), type, error; oldest first
    attempts: int                       # attempts begun
    enqueued_at: dt.datetime | None     # UTC; None before 0.4 and for unknown tasks
    started_at: dt.datetime | None      # UTC: its first attempt's claim
    finished_at: dt.datetime | None     # UTC: when it succeeded or went dead
    name: str | None = None             # the task's name (None for unknown tasks)
    args: Any = None                    # its arguments while its row is kept (pending, running, dead), else None

    @property
    def error(self) -> str | None:
        """The last failed attempt's error (type, message, traceback), or None."""
        return self.errors[-1]['error'] if self.errors else None


def _errors_of(errors: str | None) -> list[dict]:
    """A task's errors column as a list (see _errors_after); [] for none, or for a column that
    does not read as one."""
    try:
        parsed = json.loads(errors) if errors else []
    except ValueError:
        return []
    return [entry for entry in parsed if isinstance(entry, dict)] if isinstance(parsed, list) else []


def _decoded_or_none(args: str | None) -> Any:
    """A row's arguments as JSON reads them; None for a column that does not read (written by hand)."""
    try:
        return json.loads(args) if args is not None else None
    except ValueError:
        return None


def _utc_or_none(value: Any) -> dt.datetime | None:
    return _utc(value) if value is not None else None


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar('mqueue_current')


def current() -> TaskContext:
    """The running task: its id, name, queue, earlier attempts, and its transaction's connection.

    Raises:
        NotInTaskError: outside a task run by a Worker.
    """
    try:
        return _current.get()
    except LookupError:
        raise NotInTaskError('mqueue.current() is only available inside a task run by a Worker') from None


def task(func: Callable | None = None, **options):
    """Register a task with the default registry: ``@task`` or ``@task(name=..., retries=...)``."""
    return default_registry.task(func, **options)


def init(queue: str | None = None, **options) -> None:
    """Configure the default registry, e.g. ``init('mail-queue')`` (see ``Registry.init``)."""
    default_registry.init(queue, **options)


def enqueue(conn: Any, name: str, args: Sequence | Mapping | None = None, **options) -> int:
    """Insert a task in the caller's transaction (see ``Registry.enqueue``); returns its id."""
    return default_registry.enqueue(conn, name, args, **options)


def enqueue_many(conn: Any, name: str, calls: Iterable[Sequence | Mapping | None], **options) -> int:
    """Insert many tasks of one name in the caller's transaction (see ``Registry.enqueue_many``)."""
    return default_registry.enqueue_many(conn, name, calls, **options)


async def aenqueue(conn: Any, name: str, args: Sequence | Mapping | None = None, **options) -> int:
    """``enqueue`` on an asyncio connection, in the caller's transaction (see ``Registry.aenqueue``)."""
    return await default_registry.aenqueue(conn, name, args, **options)


async def aenqueue_many(conn: Any, name: str, calls: Iterable[Sequence | Mapping | None], **options) -> int:
    """``enqueue_many`` on an asyncio connection (see ``Registry.aenqueue_many``)."""
    return await default_registry.aenqueue_many(conn, name, calls, **options)


def queue_stats(conn: Any, queue: str | None = None, *, cap: int | None = None) -> list[QueueStats]:
    """Ready, scheduled, running and dead tasks per queue, and latency (see ``Registry.queue_stats``)."""
    return default_registry.queue_stats(conn, queue, cap=cap)


def throughput(conn: Any, *, queue: str | None = None, minutes: int = 60) -> list[Throughput]:
    """Tasks ended per minute (see ``Registry.throughput``)."""
    return default_registry.throughput(conn, queue=queue, minutes=minutes)


def past_timeout(conn: Any, queue: str | None = None, limit: int = 100) -> list[PastTimeout]:
    """The running tasks past their timeout: see Registry.past_timeout."""
    return default_registry.past_timeout(conn, queue, limit)


def dead_tasks(conn: Any, **filters) -> list[DeadTask]:
    """Dead tasks with their last error, newest first (see ``Registry.dead_tasks``)."""
    return default_registry.dead_tasks(conn, **filters)


def scheduled_tasks(conn: Any, **filters) -> list[ScheduledTask]:
    """``Registry.scheduled_tasks`` of the default registry."""
    return default_registry.scheduled_tasks(conn, **filters)


def running_tasks(conn: Any, **filters) -> list[RunningTask]:
    """``Registry.running_tasks`` of the default registry."""
    return default_registry.running_tasks(conn, **filters)


def delete_dead(conn: Any, ids: Iterable[int]) -> int:
    """``Registry.delete_dead`` of the default registry."""
    return default_registry.delete_dead(conn, ids)


def run_now(conn: Any, ids: Iterable[int]) -> int:
    """``Registry.run_now`` of the default registry."""
    return default_registry.run_now(conn, ids)


def retry_dead(conn: Any, ids: Iterable[int] | None = None, **filters) -> int:
    """Bring dead tasks back (see ``Registry.retry_dead``); returns how many."""
    return default_registry.retry_dead(conn, ids, **filters)


def cancel(conn: Any, task_id: int) -> bool:
    """Delete a task no worker is running (see ``Registry.cancel``); whether there was one."""
    return default_registry.cancel(conn, task_id)


def purge_dead(conn: Any, older_than: float | dt.timedelta, **filters) -> int:
    """Delete tasks dead for longer than ``older_than`` (see ``Registry.purge_dead``); how many."""
    return default_registry.purge_dead(conn, older_than, **filters)


def result(conn: Any, task_id: int) -> Result:
    """What became of a task (see ``Registry.result``)."""
    return default_registry.result(conn, task_id)


def wait_for_result(connect: Callable[[], Any] | str, task_id: int, timeout: float) -> Result:
    """``result()`` once the task has ended, or after ``timeout`` (see ``Registry.wait_for_result``)."""
    return default_registry.wait_for_result(connect, task_id, timeout)


def purge_results(conn: Any, limit: int | None = None) -> int:
    """Delete expired results (see ``Registry.purge_results``); how many."""
    return default_registry.purge_results(conn, limit)


def cron(expression: str, **options) -> Callable[[Callable], Task]:
    """Register a cron task with the default registry: ``@cron('0 * * * *')`` (see ``Registry.cron``)."""
    return default_registry.cron(expression, **options)


# The registry behind the module-level task(), init(), enqueue(); made here, once its helpers exist.
default_registry = Registry()


_JSON = json.JSONEncoder(allow_nan=False, separators=(',', ':'))   # (made once: json.dumps makes one a call)


def _encode_args(name: str, args: Any) -> str:
    if type(args) is list:   # (first: checking for a Mapping, an abstract class, takes longer)
        pass
    elif args is None:
        args = []
    elif isinstance(args, tuple):
        args = list(args)
    elif isinstance(args, Mapping):
        bad = [key for key in args if not isinstance(key, str)]
        if bad:
            raise TypeError(f'keyword arguments of task {name!r} must have string keys, not {bad[0]!r}')
    elif not isinstance(args, list):
        raise TypeError(f'args of task {name!r} must be a list/tuple (positional) or a dict (keyword), '
                        f'not {type(args).__name__}')
    try:
        encoded = _JSON.encode(args)
    except (TypeError, ValueError, RecursionError) as exc:
        raise type(exc)(f'args of task {name!r} cannot be stored as JSON: {exc}') from None
    if len(encoded) > ARGS_MAX_BYTES:   # ASCII (json escapes the rest), so characters are bytes
        raise ValueError(f'args of task {name!r} are {len(encoded)} bytes of JSON; the args column holds '
                         f'{ARGS_MAX_BYTES}')
    return encoded


def _encode_result(task: Task, value: Any) -> str:
    """What a task returned, as JSON to keep; raises as the task's failure if it is not JSON."""
    try:
        encoded = _JSON.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f'{task.name}() returned a value that cannot be kept as JSON ({exc}); '
                        'return JSON: None, bool, int, float, str, list, dict') from None
    if len(encoded) > ARGS_MAX_BYTES:   # (ASCII: characters are bytes)
        raise ValueError(f'{task.name}() returned {len(encoded)} bytes of JSON; a result holds {ARGS_MAX_BYTES}')
    return encoded


def _encode_call(task: Task, args: tuple, kwargs: dict) -> list | dict:
    """The stored form of a call: a list when positional only, else a dict of keyword arguments
    (the original package's form). Checked against the signature so mistakes fail at enqueue."""
    try:
        bound = task.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f'{task.name}(): {exc}') from None
    if not kwargs:
        return list(args)
    call = {}
    for name, value in bound.arguments.items():
        kind = task.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            call.update(value)
        elif kind is inspect.Parameter.POSITIONAL_OR_KEYWORD or kind is inspect.Parameter.KEYWORD_ONLY:
            call[name] = value
        elif value != ():
            raise TypeError(f'{task.name}(): a call mixing keyword arguments with positional-only or '
                            f'*args parameters cannot be stored; pass all arguments positionally')
    return call


def _due(delay: Any, eta: Any) -> tuple[dt.datetime | None, int]:
    """(eta as naive UTC or None, delay in microseconds) for SQL_ENQUEUE."""
    if delay is not None and eta is not None:
        raise TypeError('give delay or eta, not both')
    if eta is not None:
        if not isinstance(eta, dt.datetime):
            raise TypeError(f'eta must be a datetime, not {type(eta).__name__}')
        if eta.tzinfo is None or eta.tzinfo.utcoffset(eta) is None:
            raise ValueError('eta must be timezone-aware, e.g. datetime.now(timezone.utc) + timedelta(hours=1); '
                             'a naive datetime is ambiguous and is not guessed at')
        return eta.astimezone(dt.timezone.utc).replace(tzinfo=None), 0
    if delay is None:
        return None, 0
    return None, int(_seconds('delay', delay) * 1e6)


def _filtered(statement: str, **columns: str | None) -> tuple[str, list]:
    """A statement with ' AND column = %s' for each column given, and the parameters."""
    params = []
    for column, value in columns.items():
        if value is not None:
            statement += f' AND {column} = %s' if ' WHERE ' in statement else f' WHERE {column} = %s'
            params.append(value)
    return statement, params


def _ambient_connection(registry: Registry) -> Any:
    context = _current.get(None)
    if context is not None:
        return context.connection
    if registry.connection is not None:
        return registry.connection()
    raise NoConnectionError('no connection to enqueue on: call this inside a running task, pass connection=, '
                            'or give mqueue.init(connection=...) a callable returning your current connection')


# Crons ###########################################################################################


class Cron:
    """A cron expression read in a time zone: which UTC instants it fires at.

    The expression is matched against local wall-clock time. Where daylight saving repeats an
    hour (fall back), a time in it happens twice: a cron whose hour field is ``*`` fires at both
    (it runs every hour of real time), any other fires at the first only (a daily 02:30 job runs
    once). Where daylight saving skips an hour (spring forward), a time in it fires once, moved
    forward by the gap (02:30 becomes 03:30); where that lands on a time the cron fires at anyway,
    the two are one fire.
    """

    def __init__(self, expression: str, *, tz: str = 'UTC', overlap: bool = False):
        croniter = _croniter()
        if not isinstance(expression, str) or not croniter.is_valid(expression):
            raise ValueError(f'invalid cron expression {expression!r}; see croniter for the syntax')
        try:
            self.tz = zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f'unknown time zone {tz!r}; use an IANA name such as Europe/Berlin') from None
        self.expression, self.overlap = expression, overlap
        self.every_hour = croniter(expression).expanded[1] == ['*']
        self.task: Task | None = None

    def __repr__(self) -> str:
        return f'<mqueue.Cron {self.expression!r} {self.tz.key}>'

    def next_fire(self, after: dt.datetime) -> dt.datetime:
        """The first fire strictly after ``after`` (an aware datetime), in UTC."""
        after = after.astimezone(dt.timezone.utc)
        return min(self._candidates(after, forward=True))

    def newest_fire(self, now: dt.datetime) -> dt.datetime:
        """The newest fire at or before ``now`` (an aware datetime), in UTC."""
        now = now.astimezone(dt.timezone.utc)
        return max(self._candidates(now, forward=False))

    def _candidates(self, instant: dt.datetime, forward: bool) -> Iterator[dt.datetime]:
        """Fires after (or at and before) ``instant``, including the nearest one. Near a
        daylight-saving change wall-clock order is not time order, so there the walk covers
        _DST_REACH of wall-clock time on both sides of the first hit."""
        near = self._near_transition(instant)
        step = 1 if forward else -1
        start = self._wall(instant - step * _DST_REACH if near else instant)
        fires = _croniter()(self.expression, start if forward else start + dt.timedelta(seconds=1))
        stop = None
        for _ in range(_CRON_SEARCH_LIMIT):
            wall = fires.get_next(dt.datetime) if forward else fires.get_prev(dt.datetime)
            if stop is not None and (wall - stop) * step > dt.timedelta(0):
                return
            for candidate in self._instants(wall):
                if candidate > instant if forward else candidate <= instant:
                    yield candidate
                    if not near:
                        return
                    if stop is None:
                        stop = wall + step * _DST_REACH
        raise MQueueError(f'cron {self.expression!r} has no fire near {instant}')

    def _wall(self, instant: dt.datetime) -> dt.datetime:
        return instant.astimezone(self.tz).replace(tzinfo=None, microsecond=0)

    def _near_transition(self, instant: dt.datetime) -> bool:
        return (instant - _DST_REACH).astimezone(self.tz).utcoffset() != \
            (instant + _DST_REACH).astimezone(self.tz).utcoffset()

    def _instants(self, wall: dt.datetime) -> list[dt.datetime]:
        """The UTC instants at which a local wall-clock time happens, by the rules above."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(dt.timezone.utc)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(dt.timezone.utc)
        if first == second:
            return [first]
        if self._wall(first) != wall:   # skipped by spring forward: fold=0 moves it past the gap
            return [first]
        return [first, second] if self.every_hour else [first]


_DST_REACH = dt.timedelta(hours=3)   # wider than any daylight-saving shift
_CRON_SEARCH_LIMIT = 100_000         # candidate times looked at before giving up on an expression


def _croniter() -> Any:
    """croniter, imported only when a cron is used, so the module runs without it."""
    try:
        from croniter import croniter
    except ImportError:
        raise MQueueError('crons need croniter: pip install croniter') from None
    return croniter


class _CronScheduler:
    """Enqueues the crons of some queues when they fire: one task per fire however many
    schedulers run (each fire is decided on the cron's row, locked, in a transaction of its own),
    by the database's clock. A Worker with ``crons=True`` has one as its ``scheduler``; ``mqueue
    crons`` lists the fires with ``listing``.

    Args:
        registry: whose crons, in whose tables.
        queues: a callable returning the queues whose crons to schedule (a worker's); None: all.
        transaction: a callable returning a context manager that begins a transaction, yields its
            connection and commits it (a worker's).
    """

    def __init__(self, registry: Registry, queues: Callable[[], Sequence[str]] | None,
                 transaction: Callable[[], contextlib.AbstractContextManager]):
        self.registry, self.queues, self.transaction = registry, queues, transaction
        self.clock = time.time               # this host's clock; used only through...
        self._clock_offset = 0.0             # ...the database clock minus it, learnt from the database
        self._due: dict[str, float] = {}     # cron name -> when (by self.clock) to look at it again
        self._lock = threading.Lock()        # one thread of a worker schedules at a time

    def crons(self) -> list[Cron]:
        """The crons of the queues scheduled here."""
        if self.queues is None or not self.registry.crons:   # (a worker asks before every batch)
            return list(self.registry.crons.values())
        queues = set(self.queues())
        return [c for c in self.registry.crons.values() if (c.task.queue or self.registry.queue) in queues]

    def run_due(self) -> None:
        """Look at each cron whose next fire is due by the database clock; one transaction each.
        Returns at once if another thread is at it."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            for schedule in self.crons():
                if self._due.get(schedule.task.name, 0.0) <= self.clock():
                    fire = self._schedule(schedule)
                    # None: another worker holds the row right now; look again on the next round
                    self._due[schedule.task.name] = fire.timestamp() - self._clock_offset if fire else 0.0
        finally:
            self._lock.release()

    def seconds_to_next(self) -> float:
        """Seconds (by this host's clock) until a cron is due to be looked at again; inf if none."""
        return min(self._due.values(), default=math.inf) - self.clock()

    def _schedule(self, schedule: Cron) -> dt.datetime | None:
        """On the locked cron row: enqueue one task if a fire is due, and record the newest fire
        covered. Returns the next fire, or None if another worker holds the row."""
        name, queue = schedule.task.name, schedule.task.queue or self.registry.queue
        with self.transaction() as conn, _cursor(conn) as cursor:
            dialect = self.registry.dialect_of(conn)
            sql = functools.partial(self.registry.sql, dialect=dialect)
            cursor.execute(sql(SQL_CRON_LOCK), (queue, name))
            row = cursor.fetchone()
            if row is None:
                cursor.execute(sql(SQL_CRON_PROBE), (queue, name))
                now, exists = cursor.fetchone()
                self._learn_clock(now)
                if exists:
                    return None
                cursor.execute(sql(SQL_CRON_CREATE), (queue, name, now))
                logger.debug('cron %s: created its row; fires from %s on', name, now)
                return schedule.next_fire(_utc(now))
            last, now, task_id = row
            self._learn_clock(now)
            fire = schedule.next_fire(_utc(last))
            logger.debug('cron %s: checked; next fire %s, database now %s', name, fire, now)
            if fire > _utc(now):
                return fire
            newest = schedule.newest_fire(_utc(now))
            pending = False
            if not schedule.overlap and task_id is not None:
                cursor.execute(sql(SQL_CRON_PENDING), (task_id,))
                pending = cursor.fetchone() is not None
            if pending:
                logger.info('cron %s: fire at %s skipped; its task %s is still pending', name, newest, task_id)
            else:
                task_id = self.registry.enqueue(conn, name, [], queue=queue, eta=newest)
                logger.info('cron %s: enqueued task %s for the fire at %s%s', name, task_id, newest,
                            f' (covering the fires since {fire})' if fire != newest else '')
            cursor.execute(sql(SQL_CRON_ADVANCE), (dialect.stamp(newest.replace(tzinfo=None)), task_id, queue, name))
        return schedule.next_fire(newest)

    def _learn_clock(self, database_now: dt.datetime) -> None:
        self._clock_offset = _utc(database_now).timestamp() - self.clock()

    def listing(self) -> list[dict]:
        """Each cron scheduled here with its expression, zone, last and next fire (UTC), then each
        cron row that none of them declares (a plain read)."""
        with self.transaction() as conn, _cursor(conn) as cursor:
            dialect = self.registry.dialect_of(conn)
            cursor.execute(self.registry.sql(SQL_CRON_ALL, dialect))
            rows = {(queue, name): _utc(last) for queue, name, last in cursor.fetchall()}
            cursor.execute(self.registry.sql(SQL_NOW, dialect))
            now = _utc(cursor.fetchone()[0])
        listed = []
        for schedule in sorted(self.crons(), key=lambda c: c.task.name):
            queue = schedule.task.queue or self.registry.queue
            last = rows.pop((queue, schedule.task.name), None)
            listed.append({'name': schedule.task.name, 'queue': queue, 'expression': schedule.expression,
                           'zone': schedule.tz.key, 'last': last, 'next': schedule.next_fire(last or now)})
        for (queue, name), last in sorted(rows.items()):
            listed.append({'name': name, 'queue': queue, 'expression': None, 'zone': None, 'last': last, 'next': None})
        return listed

    def report_unserved(self, queues: list[str]) -> None:
        """Warn about crons declared without a queue whose queue, the default, is not among these:
        a daemon ported from the original package (whose start(queue) made that queue its crons')
        would otherwise never fire them, silently. A cron given a queue is left to its queue's
        workers."""
        default = self.registry.queue
        unserved = sorted(c.task.name for c in self.registry.crons.values() if c.task.queue is None)
        if unserved and default not in queues:
            logger.warning('crons %s have no queue, so they belong to the default queue %r, which this worker '
                           'does not serve: it will not schedule them. Call mqueue.init(%r) before starting it, '
                           'or declare @cron(..., queue=...)', ', '.join(unserved), default, queues[0])

    def report_undeclared(self, queues: list[str]) -> None:
        """Warn about cron rows of these queues that no cron here declares: left alone, so a
        rolling deploy keeps their last fire."""
        declared = {(c.task.queue or self.registry.queue, c.task.name) for c in self.crons()}
        try:
            with self.transaction() as conn, _cursor(conn) as cursor:
                cursor.execute(self.registry.sql(SQL_CRON_ROWS, self.registry.dialect_of(conn), queues=len(queues)),
                               queues)
                rows = cursor.fetchall()
        except Exception as exc:
            logger.warning('could not read the cron table (%s)', _describe_error(exc, short=True))
            return
        for queue, name, last in rows:
            if (queue, name) not in declared:
                logger.warning('cron row %s (queue %s, last fire %s) matches no declared cron; left alone',
                               name, queue, last)


# Worker ##########################################################################################


class _Claim:
    """A claimed task: what to call, and the attempt that the claim counted."""
    __slots__ = ('id', 'task', 'call', 'queue', 'attempt', 'eta', 'errors', 'kept', 'settled')

    def __init__(self, task_id: int, task: Task, call: list | dict, queue: str, attempt: int, eta: dt.datetime,
                 errors: str | None = None):
        self.id, self.task, self.call, self.queue = task_id, task, call, queue
        self.attempt = attempt   # 1 on the first run; equals the row's retries while the claim is ours
        self.eta = eta           # when it was due, as claimed
        self.errors = errors     # the row's errors column: its earlier attempts' (JSON), or None
        self.kept: str | None = None   # what it returned, as JSON, if it keeps its result
        self.settled = False     # its row written by its batch (retry, bury, release): locked until the commit

    def context(self, connection: Any, worker: Worker) -> TaskContext:
        return TaskContext(self.id, self.task.name, self.queue, self.attempt - 1, self.eta, connection, worker)


class _Outcome(NamedTuple):
    """How an attempt ended, as the outcome method that recorded it says: the log line and the
    event, reported once the transaction that recorded it has committed (the log is the record of
    what happened, not of what was about to)."""
    context: TaskContext    # without a connection: its transaction is over by then
    level: int              # the log line's level, format and arguments
    message: str
    args: tuple
    event: str | None       # the hook it calls, named in full; None: no event (a lock conflict)
    info: dict              # the event's fields: duration, and error and exception on a failure


def _attempt(context: TaskContext) -> str:
    """How a log line names an attempt: task 7 tasks.mail (queue mail) attempt 2."""
    return f'task {context.id} {context.name} (queue {context.queue}) attempt {context.retries + 1}'


def _host_id() -> str:
    """This host as a worker id names it: its name, and on Linux its pid namespace (containers that
    share a hostname but not their process ids must not look up each other's pids)."""
    try:
        return f'{socket.gethostname()}#{os.stat("/proc/self/ns/pid").st_ino}'
    except OSError:
        return socket.gethostname()


_HOST = _host_id()


def _worker_id() -> str:
    """Who runs a claimed task, written on its row: host:pid:thread (the thread's name; the host
    with its pid namespace on Linux), e.g. web1#4026531836:4242:mqueue-worker-0. (The pid is read
    each time: a worker may be forked after it is made.)"""
    return f'{_HOST}:{os.getpid()}:{threading.current_thread().name}'[:255]


def _errors_after(errors: str | None, context: TaskContext, info: dict) -> str:
    """A task's errors column with this failed attempt's added: a JSON list, oldest first, of
    {attempt, at (the worker's clock, UTC), type, error}, the last ERRORS_KEPT of them. A column
    that does not read as such a list (written by hand, say) starts over."""
    earlier = _errors_of(errors)
    exc = info.get('exception')
    kind = (f'{type(exc).__module__}.{type(exc).__qualname__}' if exc is not None
            else info['error'].split(':', 1)[0])
    entry = {'attempt': context.retries + 1, 'at': dt.datetime.now(dt.timezone.utc).isoformat(timespec='microseconds'),
             'type': kind, 'error': _cut(info['error'])}
    return json.dumps(earlier[-(ERRORS_KEPT - 1):] + [entry])


class Worker:
    """Runs due tasks, each inside the transaction that deletes its row.

    A claim is committed, in a short transaction of its own, before its tasks run: it counts the
    attempt and moves the tasks' eta ``lease`` seconds ahead, so a worker that dies mid-task
    cannot make a task run forever and cannot lose it: another worker rescues the task once no
    transaction holds its row (MySQL, PostgreSQL), or it is due again when the lease ends.
    The tasks then run in a second transaction that holds their row locks (so no other worker can
    run them, however long they take), each inside a savepoint (taken as it reads its connection):
    on success a row is deleted in the commit of its task's writes; on failure the savepoint is
    rolled back and the retry is recorded in that same transaction.

    Args:
        connect: a zero-argument callable returning a new DB-API connection (one per thread), or
            one open connection for a one-thread worker. May be None with a ``transaction`` hook.
            A list of callables, one per database: each thread serves them in rotation, a batch
            from each in turn, each with its own connection (docs/scaling.md).
        queues: the queues to serve; default ``registry.queues()``.
        registry: default the module's registry. tasks: a package (or list) whose modules are
            all imported first, so their tasks register.
        concurrency: threads, each with its own connection.
        batch: tasks claimed and run per transaction (a batch starts no new task after
            BATCH_SECONDS; retried tasks run alone).
        lease: seconds a claim hides a task: how long before a dead worker's task returns where
            no rescue sees it sooner (rescue_after=None; on SQLite, a claim from another host).
        rescue_after: seconds after its claim that a task no worker holds any more (its worker
            died or lost its connection) is due again, that attempt counted: on MySQL and
            PostgreSQL no transaction holds its row; on SQLite, the process its row names has
            ended. None: after the lease. (On a Galera cluster's node, told by the server, there is
            no rescue, whose row locks other nodes do not see: the lease fences running tasks
            there, renewed while they run; docs/scaling.md.)
        poll_interval: seconds between claims while idle (from the start of one to the start of
            the next; at least half of it from the end of one).
        timeout: seconds an attempt of a task without a timeout of its own may run (default None:
            no limit). Past its timeout a task's database session is ended from another
            connection (its writes roll back, its row locks go) and the attempt fails with
            TaskTimeout; its batch-mates go back uncounted. A task that does not return within
            TIMEOUT_GRACE seconds of that (Python code cannot be stopped from another thread) is
            given up: the worker stops and ``run()`` raises MQueueError, for a supervisor to
            restart it. See docs/timeouts.md.
        isolation: the isolation level of the worker's own connections, e.g. 'READ COMMITTED';
            default None, the server's (REPEATABLE READ unless configured): measured twice as
            fast for claiming on MariaDB. With a ``transaction`` hook the hook's connections are
            used as they are.
        crons: whether this worker also schedules the crons of the queues it serves (its
            ``scheduler``; None without).
        hooks: a mapping from names in HOOKS to callables:
            transaction(): a context manager that begins a transaction, yields its DB-API
                connection, commits on success and rolls back on error;
            around_task(context): a context manager wrapped around each task (app context, tracing);
            task_started/task_succeeded/task_failed/task_dead(context, **info): events.
    """

    def __init__(self, connect: Callable[[], Any] | Sequence[Callable[[], Any]] | Any | None, queues: Sequence[str] | None = None, *,
                 registry: Registry | None = None, tasks: str | Sequence[str] | None = None,
                 concurrency: int = 1, batch: int = DEFAULT_BATCH, lease: float = DEFAULT_LEASE,
                 rescue_after: float | None = DEFAULT_RESCUE_AFTER,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, timeout: float | None = None,
                 isolation: str | None = None, crons: bool = True, hooks: Mapping[str, Callable] | None = None):
        self.registry = registry or default_registry
        for package in [tasks] if isinstance(tasks, str) else tasks or ():
            _import_tree(package)
        unknown = set(hooks or ()) - set(HOOKS)
        if unknown:
            raise ValueError(f'unknown hooks {sorted(unknown)}; the hooks are {", ".join(HOOKS)}')
        self.hooks = dict(hooks or {})
        databases = list(connect) if isinstance(connect, (list, tuple)) else [connect]
        if not databases:
            raise ValueError('Worker needs a connection factory: an empty list was given')
        if len(databases) > 1:
            if 'transaction' in self.hooks:
                raise ValueError('a transaction hook serves one database: give one connect, or no hook')
            if any(hasattr(each, 'cursor') or not callable(each) for each in databases):
                raise ValueError('several databases are served from the worker\'s own threads: give a connection '
                                 'factory for each (e.g. mqueue.connect_url(url)), not open connections')
        connect = databases[0]
        if connect is None and 'transaction' not in self.hooks:
            raise ValueError('Worker needs connect, or a transaction hook')
        if connect is not None and (hasattr(connect, 'cursor') or not callable(connect)):   # a connection
            if concurrency != 1:
                raise ValueError('one connection serves one thread: pass a connection factory for concurrency > 1')
            connect = _SharedConnection(connect)
        self.connect = connect
        # A task's savepoint is taken as it reads current().connection (_Savepoint), unless the
        # connection reaches tasks otherwise: an ORM session's, or an open one its caller holds
        # (or on a Galera cluster: _learn_cluster).
        self._eager_savepoints = 'transaction' in self.hooks or isinstance(connect, _SharedConnection)
        self.queues = [_checked_text('queue', q, QUEUE_MAX) for q in queues] if queues else None
        self.concurrency = _whole_number('concurrency', concurrency, 1)
        self.batch = _whole_number('batch', batch, 1)
        self.lease = _seconds('lease', lease, positive=True)
        self.rescue_after = None if rescue_after is None else _seconds('rescue_after', rescue_after, positive=True)
        self.poll_interval = _seconds('poll_interval', poll_interval, positive=True)
        self.timeout = None if timeout is None else _seconds('timeout', timeout, positive=True)
        self._refuse_unenforceable_timeouts()
        if isolation is not None and isolation.upper() not in (
                'READ UNCOMMITTED', 'READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE'):
            raise ValueError(f'unknown isolation level {isolation!r}')
        self.isolation = isolation
        self._transaction = self._hook_transaction if 'transaction' in self.hooks else self._own_transaction
        self.dialect: Dialect | None = self.registry.dialect   # else learnt from the first connection
        self.scheduler = _CronScheduler(self.registry, self._served_queues, self._transaction) if crons else None
        self._stopping = threading.Event()
        self._local = threading.local()
        self._signals = 0
        self._abandon_signal: int | None = None    # set by a second signal
        # lock_conflicts: deadlocks and lock-wait timeouts retried (a Galera cluster's certification
        # failures among them), and where they struck: claim_, batch_ (outside its tasks) and task_conflicts
        self.stats: collections.Counter = collections.Counter()
        self._inflight: dict[int, tuple[int | None, list[_Claim], str]] = {}   # thread -> (connection id, claims, worker)
        self._priorities: list[tuple[str, int]] = []   # (queue, priority) pairs to claim from...
        self._priorities_at = -math.inf                # ...as of this time.monotonic()
        self._rescue_at = -math.inf                    # the next look for a dead worker's tasks (monotonic)
        self._rescue_possible: bool | None = None      # see _can_rescue; None: not yet known
        self._cluster: bool | None = None              # a Galera cluster's node (None: not yet known)...
        self._renewing = threading.Lock()              # ...where a thread renews the running batches' leases...
        self._renew_warned = False                     # ...unless the worker has no connection of its own for it
        self._counts: dict[tuple[str, dt.datetime], tuple[int, int]] = {}   # (queue, minute) -> (done, failed)
        self._counts_lock = threading.Lock()
        self._counts_at = 0.0           # when they are next written (monotonic; see _report)
        self._counts_purge_at = 0.0     # when minutes past COUNTS_KEPT are next deleted
        self._counts_table: bool | None = None   # whether the counts' table is there (None: not looked yet)...
        self._counts_look_at = 0.0      # ...and, if not, when to look again
        self._counts_warned = False     # whether the log has said so since the last write that succeeded
        self._purge_at = time.monotonic() + RESULTS_PURGE_EVERY   # the next deletion of expired results
        self._watchdog = _Watchdog(self)               # times out the tasks that have a timeout
        self._given_up: str | None = None              # why a task that never returned stopped the worker...
        self._lost_threads: set[threading.Thread] = set()   # ...the threads it holds, not waited for...
        self._recording: list[threading.Thread] = []   # ...and the threads recording their batches
        # Several databases: a worker of each, run in rotation by this one's threads (_rotate),
        # sharing its stop and its stats; everything else (connections, rescue, crons, counts) is
        # each database's own.
        self._databases = [Worker(each, queues, registry=self.registry, concurrency=concurrency, batch=batch,
                                  lease=lease, rescue_after=rescue_after, poll_interval=poll_interval, timeout=timeout,
                                  isolation=isolation, crons=crons, hooks=hooks)
                           for each in databases] if len(databases) > 1 else []
        self._rotated = False   # whether this is one of them (its log lines then name its database)
        for worker in self._databases:
            worker._stopping, worker.stats, worker._rotated = self._stopping, self.stats, True

    # The loop

    def run(self, burst: bool = False) -> int:
        """Process tasks until stopped (SIGTERM/SIGINT or ``stop()``), or, with ``burst``, until
        no due task is left. Returns the number of tasks processed.

        A first signal lets running tasks finish and commit; a second abandons them (their
        transactions roll back and they return to the queue).
        """
        if not self.registry.tasks:
            raise MQueueError('no tasks are registered: import your tasks, or pass tasks="package"')
        involved = [self, *self._databases]
        for worker in involved:
            worker._refuse_unenforceable_timeouts()
            if any(thread.is_alive() for thread in worker._lost_threads):
                raise MQueueError(f'{worker._given_up}; its task still runs, so this worker cannot run again: start a '
                                  'new process')
        self._stopping.clear()
        self._signals = 0
        for worker in involved:
            worker._abandon_signal = None
            worker._given_up, worker._lost_threads, worker._recording = None, set(), []
        # The handlers first: a deploy may stop a worker that has just started (systemd and
        # Kubernetes send SIGTERM at any moment), and until they are in, SIGTERM kills the process.
        with self._signal_handlers():
            queues = self._served_queues()
            named = [worker.connect.description for worker in self._databases or [self]
                     if hasattr(worker.connect, 'description')]
            logger.info('mqueue %s worker starting: %squeues %s, concurrency %d, batch %d, tasks %d', __version__,
                        f'database{"s" if len(named) > 1 else ""} {", ".join(named)}, ' if named else '',
                        ', '.join(queues), self.concurrency, self.batch, len(self.registry.tasks))
            if self.scheduler:
                self.scheduler.report_unserved(queues)
                self.scheduler.report_undeclared(queues)
            # A task that may time out runs in a thread of its own, even alone: if it never
            # returns, this thread can still stop the worker (not with one connection given: the
            # caller's thread owns it); so does every task where this thread's event loop runs.
            in_thread = self._has_timeouts() and not isinstance(self.connect, _SharedConnection)
            if self.concurrency == 1 and not in_thread and not self._databases and asyncio._get_running_loop() is None:
                processed = self._loop(burst)
            else:
                processed = self._run_threads(burst)
            if self._abandon_signal is not None:
                raise _ColdShutdown(self._abandon_signal)
            for worker in involved:
                if worker._given_up:
                    for recording in worker._recording:   # the given-up task's batch, recorded before the process exits
                        recording.join(SQLITE_BUSY_TIMEOUT)
                    raise MQueueError(worker._given_up)
        logger.info('mqueue worker stopped after %d tasks', processed)
        return processed

    def stop(self) -> None:
        """Ask the worker to stop once its running tasks have committed; safe from any thread."""
        self._stopping.set()

    def run_once(self) -> int:
        """Enqueue the crons that are due, then claim one batch of due tasks and process it.
        Returns how many tasks were processed (with several databases: a batch from each)."""
        if self._databases:
            return sum(worker._step() for worker in self._databases)
        return self._step()

    def _step(self) -> int:
        """One batch: claimed in a short transaction of its own, then run in another.

        Claiming in the transaction that completes the previous batch would save a commit per
        batch, but on MariaDB two workers' claims can deadlock, and InnoDB then rolls back the
        whole transaction: the finished batch with it, which would then run again."""
        if self.scheduler:
            self.scheduler.run_due()
        if time.monotonic() >= self._purge_at:
            self._purge_results()
        idle = getattr(self._local, 'idle', False)
        if self._write_counts() and idle:   # (its transaction took the connection out of idle mode)
            self._go_idle()
        if getattr(self._local, 'idle', False) and not self._probe():
            return 0
        try:
            claimed, outcomes = self._claim()   # and the rows it rescued or buried
        except Exception as exc:
            if _lock_conflict(exc):
                self.stats['claim_conflicts'] += 1
            raise
        buried = sum(outcome.event == 'task_dead' for outcome in outcomes)
        if not claimed:
            for outcome in outcomes:
                self._report(outcome)
            if not outcomes:
                self._go_idle()
            return buried
        thread = threading.get_ident()
        self._inflight[thread] = (getattr(self._local, 'connection_id', None), claimed,
                                  _worker_id() if self._cluster else '')   # (the lease renewal's)
        if self._cluster and not self._renewing.locked() and self._renewable():
            threading.Thread(target=self._renew_leases, name='mqueue-lease', daemon=True).start()
        try:
            self._process(claimed, outcomes)
        except Exception as exc:
            if _lock_conflict(exc):   # the batch's writes went with its transaction: hand it back uncounted
                self.stats['batch_conflicts'] += 1
                self._hand_back(claimed)
            raise
        finally:
            self._inflight.pop(thread, None)
        return len(claimed) + buried

    def _loop(self, burst: bool) -> int:
        processed, polled_at = 0, time.monotonic()   # (when the steps since the last wait began)
        try:
            while not self._stopping.is_set():
                done, wait = self._turn(burst)
                if done is None:   # an error, or a lock conflict: the same step again after the wait
                    self._stopping.wait(wait)
                    polled_at = time.monotonic()
                    continue
                processed += done
                if not done:
                    if burst:
                        break
                    self._wait_idle(self._idle_wait(polled_at))
                    polled_at = time.monotonic()
        finally:
            self._end_thread()
        return processed

    def _turn(self, burst: bool) -> tuple[int | None, float]:
        """One step, with the loop's handling of its errors: (tasks processed, 0.0), or (None,
        seconds to wait) after an error that a later step may not meet. Raises the others."""
        try:
            done = self._step()
        except Exception as exc:
            if _lock_conflict(exc):   # InnoDB rolled the transaction back; the connection is fine
                self.stats['lock_conflicts'] += 1
                logger.info('lock conflict (%s); retrying', _describe_error(exc, short=True))
                return None, random.uniform(0, 0.01)
            problem = _schema_problem(exc)
            if problem:   # no table, or an older one: waiting will not create it
                raise MQueueError(problem) from exc
            if isinstance(exc, MQueueError) or (burst and not _retryable(exc)):
                raise   # a server or setup mqueue cannot work with: retrying will not help
            self._local.errors = errors = getattr(self._local, 'errors', 0) + 1
            wait = _jittered(min(ERROR_BACKOFF_MAX, ERROR_BACKOFF_MIN * 2 ** (errors - 1)))
            where = getattr(self.connect, 'description', None) if self._rotated else None
            logger.warning('worker error (%s%s); retrying in %.2fs', _describe_error(exc, short=True),
                           f' on {where}' if where else '', wait, exc_info=not _retryable(exc))
            self._inflight.pop(threading.get_ident(), None)
            self._discard_connection()
            return None, wait
        self._local.errors = 0
        return done, 0.0

    def _end_thread(self) -> None:
        """A worker thread's last words on this database: its counts, and its connection closed."""
        self._close_event_loop()   # (an async task's loop, however the thread ends)
        self._inflight.pop(threading.get_ident(), None)
        self._local.errors = 0
        if self._abandon_signal is None and (getattr(self._local, 'connection', None) is not None
                                             or 'transaction' in self.hooks):
            self._write_counts(last=True)   # (not after an error took the connection, nor on a cold shutdown)
        self._discard_connection()

    def _rotate(self, burst: bool) -> int:
        """A thread's loop over several databases: a step (a batch) from each in turn. A database
        found idle is polled again after its poll interval, one whose step failed after its
        backoff; meanwhile the others go on, so a database that is down delays them by no more
        than a failed connection attempt. The thread sleeps only when every database waits. (No
        PostgreSQL NOTIFY wait here: it would hold the thread on one database.)"""
        workers = self._databases
        processed, ready_at, emptied = 0, [0.0] * len(workers), [False] * len(workers)
        polled_at = [time.monotonic()] * len(workers)   # (when each one's steps since its last wait began)
        try:
            while not self._stopping.is_set():
                for slot, worker in enumerate(workers):
                    if self._stopping.is_set() or time.monotonic() < ready_at[slot]:
                        continue
                    if ready_at[slot]:   # its first step since a wait
                        polled_at[slot], ready_at[slot] = time.monotonic(), 0.0
                    done, wait = worker._turn(burst)
                    processed += done or 0
                    emptied[slot] = done == 0
                    if done is None:
                        ready_at[slot] = time.monotonic() + wait
                    elif not done:
                        ready_at[slot] = time.monotonic() + (0.0 if burst else worker._idle_wait(polled_at[slot]))
                if burst and all(emptied):
                    break
                # (in burst mode a database found empty is done with, not waited for)
                waiting = [at for at, empty in zip(ready_at, emptied) if not (burst and empty)]
                self._stopping.wait(max(0.0, min(waiting) - time.monotonic()))
        finally:
            for worker in workers:
                worker._end_thread()
        return processed

    def _run_threads(self, burst: bool) -> int:
        counts = [0] * self.concurrency
        involved = [self, *self._databases]
        failures: list[BaseException] = []

        def serve(slot: int) -> None:
            try:
                counts[slot] = self._rotate(burst) if self._databases else self._loop(burst)
            except BaseException as exc:   # burst mode re-raises; hand it to run()
                failures.append(exc)
                self._stopping.set()
        threads = [threading.Thread(target=serve, args=(slot,), name=f'mqueue-worker-{slot}', daemon=True)
                   for slot in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive() and not any(thread in worker._lost_threads for worker in involved):
                thread.join(0.05)   # a short join keeps the main thread responsive to signals
                if self._abandon_signal is not None:
                    for worker in self._databases or [self]:
                        worker._abandon_threads()
                    raise _ColdShutdown(self._abandon_signal)
        if failures:
            raise failures[0]
        return sum(counts)

    def _purge_results(self) -> None:
        """Delete a bounded batch of expired results, in a transaction of its own, every
        RESULTS_PURGE_EVERY seconds (whichever thread comes first); a failure is only logged."""
        self._purge_at = time.monotonic() + _jittered(RESULTS_PURGE_EVERY)
        try:
            with self._transaction() as conn:
                purged = self.registry.purge_results(conn, RESULTS_PURGE_MAX)
        except Exception as exc:
            logger.warning('could not delete expired results (%s)', _describe_error(exc, short=True))
            return
        if purged:
            logger.info('deleted %s', _count(purged, 'expired result'))

    def _served_queues(self) -> list[str]:
        return self.queues or self.registry.queues()

    def _refuse_unenforceable_timeouts(self) -> None:
        """A worker given one connection to MySQL/PostgreSQL cannot end a task's session (it needs
        a connection of its own to do so from): refused before any task is claimed."""
        if (isinstance(self.connect, _SharedConnection) and self._has_timeouts()
                and self.registry.dialect_of(self.connect.conn).kill):
            raise ValueError('a timeout is enforced by ending the task\'s session from another connection: give the '
                             'worker a connection factory, not one connection')

    def _has_timeouts(self) -> bool:
        """Whether a task this worker runs may have a timeout."""
        return self.timeout is not None or any(task.timeout is not None for task in self.registry.tasks.values())

    def _sql(self, statement: str, **lists: int) -> str:
        return self.registry.sql(statement, self.dialect, **lists)

    # Claiming

    def _claim(self) -> tuple[list[_Claim], list[_Outcome]]:
        """In a short transaction of its own: rescue a dead worker's tasks (about once a second),
        lock due rows, count the attempt and start the lease. Rows that cannot run (unknown name,
        bad args, attempts used up by crashes) are buried here."""
        # The claim's commit need not wait for the disk (measured: 8-18% more tasks/s on
        # PostgreSQL, 15% on SQLite): its batch's commit, which does wait, writes the log up to it
        # (the log is written in order). A server crash loses only claims whose batches it loses
        # too; their tasks run again as if never claimed.
        with self._transaction(lazy=True) as conn, _cursor(conn) as cursor:
            if self.dialect.lazy_commit:
                cursor.execute(self.dialect.lazy_commit)
            return self._claim_rows(cursor)

    def _claim_rows(self, cursor: Any) -> tuple[list[_Claim], list[_Outcome]]:
        pairs = self._pairs(cursor)
        runnable, outcomes = [], self._rescue(cursor) if self._rescuing(cursor) else []
        for task_id, name, args, attempts, queue, eta, _, errors in self._claim_due(cursor, pairs):
            claim_or_error = self._vet(task_id, name, args, attempts, queue, _utc(eta), errors)
            if isinstance(claim_or_error, str):
                context = TaskContext(task_id, name, queue, attempts, _utc(eta), None, self)
                info = {'duration': 0.0, 'error': claim_or_error, 'exception': None}
                outcomes.append(self._bury(cursor, context, info, errors, ran=False))
            else:
                runnable.append(claim_or_error)
        claimed = _batch_of(runnable)
        by_deadline: dict[int | None, list[int]] = {}   # microseconds from now (None: no timeout) -> ids
        late = BATCH_SECONDS if len(claimed) > 1 else 0.0   # (a task of a batch starts within BATCH_SECONDS of
        for claim in claimed:                               # the first, or goes back unrun)
            timeout = self._timeout_of(claim)
            by_deadline.setdefault(None if timeout is None else int((timeout + late) * 1e6), []).append(claim.id)
        for deadline, ids in by_deadline.items():
            cursor.execute(self._sql(SQL_LEASE, ids=len(ids)), (int(self.lease * 1e6), deadline, _worker_id(), *ids))
        return claimed, outcomes

    def _timeout_of(self, claim: _Claim) -> float | None:
        return claim.task.timeout if claim.task.timeout is not None else self.timeout

    def _rescuing(self, cursor: Any) -> bool:
        """Whether to look for a dead worker's tasks now: about once a second, or at once when the
        idle probe saw one; never where no rescue can tell them (see _can_rescue)."""
        if not self._can_rescue(cursor):
            return False
        now = time.monotonic()
        if now < self._rescue_at and not getattr(self._local, 'rescue', False):
            return False
        self._rescue_at, self._local.rescue = now + RESCUE_EVERY, False
        return True

    def _can_rescue(self, cursor: Any | None = None) -> bool:
        """Whether this worker rescues a dead worker's tasks: asked for (rescue_after), on a
        database whose running batches hold row locks, at an isolation level whose plain reads
        do not lock (MySQL's SERIALIZABLE: the look would wait on the running batches), with the
        claimed index (a table made before 0.3 lacks it: looked up once, with the first claim's
        cursor). Otherwise a dead worker's tasks return when their lease ends."""
        if self._rescue_possible is None and cursor is not None:
            self._rescue_possible, why = self._rescue_check(cursor)
            if why:
                logger.warning('no rescue of a dead worker\'s tasks: %s; they return when their lease (%gs) ends',
                               why, self.lease)
        return bool(self._rescue_possible)

    def _rescue_check(self, cursor: Any) -> tuple[bool, str]:
        dialect = self.dialect
        if self.rescue_after is None or self._cluster:
            return False, ''   # as asked, or said when the cluster was seen (_open)
        if self.isolation and self.isolation.upper() in dialect.locking_reads_at:
            return False, f'{dialect.name} reads with locks at {self.isolation.upper()}'
        cursor.execute(dialect.has_claimed_index, (self.registry.table,))
        if not cursor.fetchone()[0]:
            return False, (f'table {self.registry.table} has no index on claimed_at (added in 0.3, on SQLite in '
                           '0.4; docs/upgrading.md gives the statement that adds it)')
        return True, ''

    def _rescue(self, cursor: Any) -> list[_Outcome]:
        """Make due again, in the claim's transaction, the claimed tasks whose rows no transaction
        holds: their worker died or lost its connection (its transaction went with it). Their
        attempt stays counted. Returns the log lines, written once the claim commits."""
        grace = -int(self.rescue_after * 1e6)
        cursor.execute(self._sql(SQL_RESCUE_FIND), (grace, RESCUE_MAX))
        candidates = [row[0] for row in cursor.fetchall()]
        if not candidates:
            return []
        cursor.execute(self._sql(SQL_RESCUE_LOCK, ids=len(candidates)), (grace, *candidates))
        orphans = [row[:-2] for row in cursor.fetchall() if row[-1] and self._orphaned(row[-2])]   # (see _orphaned)
        if not orphans:
            return []
        cursor.execute(self._sql(SQL_RESCUE, ids=len(orphans)), [row[0] for row in orphans])
        outcomes = []
        for task_id, name, queue, attempts, eta, claimed_at in orphans:
            context = TaskContext(task_id, name, queue, attempts - 1, _utc(eta), None, self)
            outcomes.append(_Outcome(context, logging.WARNING, '%s was left unfinished: its worker died or lost its '
                                     'connection (claimed at %s UTC); due again', (_attempt(context), claimed_at),
                                     None, {}))
        return outcomes

    def _renew_leases(self) -> None:
        """On a Galera cluster, in a thread of its own while batches run: every LEASE_RENEW_AT of
        the lease, move their tasks' leases ahead from a connection of its own (the batches hold
        no row lock there to wait for), so that no worker on another node claims a task that runs
        longer than the lease. Ends WATCHDOG_IDLE seconds after the last batch; a failure is logged
        and the next renewal tried (a task whose lease ends meanwhile may be claimed elsewhere:
        the cluster then rolls back one of the two, and its tasks run again)."""
        if not self._renewing.acquire(blocking=False):
            return   # (another thread renews)
        conn, idle_since, pause = None, time.monotonic(), threading.Event()
        try:
            while time.monotonic() - idle_since < WATCHDOG_IDLE and not self._given_up:
                batches = list(self._inflight.values())
                if batches:
                    idle_since = time.monotonic()
                    try:
                        if conn is None:
                            conn = self.connect()
                            if self.dialect.short_lock_wait:   # a row its batch holds: wait briefly, try later
                                with _cursor(conn) as cursor:
                                    cursor.execute(self.dialect.short_lock_wait)
                        with _cursor(conn) as cursor:
                            for _, claimed, worker in batches:
                                # (not a row its batch has written: locked until the batch commits, it
                                # would hold this thread up; a batch that runs on past the lease after
                                # a task failed may then be claimed from another node and run again)
                                ids = [claim.id for claim in claimed if not claim.settled]
                                if ids:
                                    cursor.execute(self._sql(SQL_RENEW, ids=len(ids)),
                                                   (int(self.lease * 1e6), *ids, worker))
                        conn.commit()
                    except Exception as exc:
                        logger.warning('renewing the running tasks\' leases failed (%s); trying again in %gs',
                                       _describe_error(exc, short=True), self.lease * LEASE_RENEW_AT)
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
                pause.wait(self.lease * LEASE_RENEW_AT)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._renewing.release()
        if self._inflight and not self._given_up:   # (a batch that began as this thread ended did not start one)
            threading.Thread(target=self._renew_leases, name='mqueue-lease', daemon=True).start()

    def _renewable(self) -> bool:
        """Whether this worker has connections of its own to renew leases from; said once if not."""
        if self.connect is not None and not isinstance(self.connect, _SharedConnection):
            return True
        if not self._renew_warned:
            self._renew_warned = True
            logger.warning('on a Galera cluster a running task\'s lease is renewed from a connection of the worker\'s '
                           'own, and this worker has none (one connection, or a transaction hook without connect): '
                           'a task that runs longer than its lease (%gs) may be claimed on another node, and its '
                           'batch rolled back and run again', self.lease)
        return False

    def _claim_due(self, cursor: Any, pairs: list[tuple[str, int]]) -> list[tuple]:
        """Lock up to a batch of due rows from these (queue, priority) pairs: a priority at a
        time, smallest first, until the batch is full. The queues of one priority are one
        statement where the database allows (in eta order across them), else one each. (One
        statement for every priority would lock a batch of rows in each: measured on MariaDB,
        a drain spread over 8 priorities ran at 0.63 of a one-priority drain, 0.80 this way.)
        A pair this thread's claim found empty less than EMPTY_RANGE_WAIT ago is tried after the
        others, and only if they leave the batch short: an empty range costs a statement, and
        on MariaDB one just drained costs as much as a full one (its delete-marked index entries,
        not yet purged, are walked). So a task enqueued at a drained priority while the worker
        is busy at another waits up to that long before it takes its turn; an idle worker's
        claim tries every pair.
        Where a queue has more than MAX_PRIORITIES priorities in use, trying each in turn would
        cost a statement per empty one: a plain read first finds the pairs with a due task
        (PROBE_BLOCKS pairs at a time, the next ones only if the batch is not full yet), and only
        those are claimed from: one statement more per claim (per PROBE_BLOCKS pairs read)."""
        rows: list[tuple] = []
        crowded = max(collections.Counter(queue for queue, _ in pairs).values(), default=0) > MAX_PRIORITIES
        now = time.monotonic()
        empty = self._local.__dict__.setdefault('empty_ranges', {})   # pair -> when this thread found it empty
        waiting = {pair for pair in pairs if now - empty.get(pair, -math.inf) < EMPTY_RANGE_WAIT}
        for some in ([pair for pair in pairs if pair not in waiting], [pair for pair in pairs if pair in waiting]):
            if not crowded:
                self._claim_pairs(cursor, some, rows, empty)
            else:
                for start in range(0, len(some), PROBE_BLOCKS):
                    self._claim_pairs(cursor, self._due_pairs(cursor, some[start:start + PROBE_BLOCKS]), rows, empty)
                    if len(rows) >= self.batch:
                        break
            if len(rows) >= self.batch:
                break
        return rows

    def _due_pairs(self, cursor: Any, pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Those of these pairs (PROBE_BLOCKS at most) that hold a due task: one plain read."""
        block = self._sql(SQL_DUE_PAIRS)
        cursor.execute(block if len(pairs) == 1 else self.dialect.union([block] * len(pairs)),
                       [p for n, pair in enumerate(pairs) for p in (n, *pair)])
        due = {int(row[0]) for row in cursor.fetchall()}
        return [pair for n, pair in enumerate(pairs) if n in due]

    def _claim_pairs(self, cursor: Any, pairs: list[tuple[str, int]], rows: list[tuple],
                     empty: dict[tuple[str, int], float]) -> list[tuple]:
        """_claim_due's claim from these pairs, adding to rows until they are a batch, and noting
        in `empty` when each statement left its pairs without a due row it could lock; rows."""
        claim = self._sql(SQL_CLAIM)
        for _, same_priority in itertools.groupby(pairs, key=lambda pair: pair[1]):
            group = list(same_priority)
            if len(group) > 1 and self.dialect.claim_union:
                wanted = self.batch - len(rows)
                cursor.execute(self.dialect.union([claim] * len(group)) + self._sql(SQL_CLAIM_ORDER),
                               (*(p for pair in group for p in (*pair, wanted)), wanted))
                self._note_empty(group, wanted, cursor.fetchall(), rows, empty)
            else:
                for pair in group:
                    wanted = self.batch - len(rows)
                    cursor.execute(claim, (*pair, wanted))
                    self._note_empty([pair], wanted, cursor.fetchall(), rows, empty)
                    if len(rows) >= self.batch:
                        break
            if len(rows) >= self.batch:
                break
        return rows

    @staticmethod
    def _note_empty(pairs: list[tuple[str, int]], wanted: int, fetched: list[tuple], rows: list[tuple],
                    empty: dict[tuple[str, int], float]) -> None:
        """Add a claim statement's rows; fewer than it asked for means its pairs have no more."""
        rows += fetched
        found_empty = time.monotonic() if len(fetched) < wanted else None
        for pair in pairs:
            if found_empty is None:
                empty.pop(pair, None)
            else:
                empty[pair] = found_empty

    def _probe(self) -> bool:
        """Whether a task is due, or a dead worker's is to be rescued (asked while idle, in
        autocommit mode): one statement; past PROBE_BLOCKS (queue, priority) pairs, one per
        PROBE_BLOCKS of them until one finds a task (the first also looks for the dead's)."""
        rescuing = self._can_rescue()
        with _cursor(self._local.connection) as cursor:
            pairs = self._pairs(cursor, idle=True)
            return any(self._probe_pairs(cursor, pairs[start:start + PROBE_BLOCKS], rescuing, orphans=not start)
                       for start in range(0, max(len(pairs), 1), PROBE_BLOCKS))

    def _probe_pairs(self, cursor: Any, pairs: list[tuple[str, int]], rescuing: bool, orphans: bool) -> bool:
        """One statement of the probe: whether one of these pairs holds a due task, or (orphans,
        where this worker rescues) a dead worker's claim is to be rescued."""
        locks = self.dialect.row_locks
        blocks = [(self._sql(SQL_PROBE), (*pair, not rescuing)) for pair in pairs]
        if rescuing and orphans:   # (SQLite: a few of the oldest claims, their workers then looked up)
            read = 1 if locks else RESCUE_MAX
            blocks.append((self._sql(SQL_PROBE_ORPHAN), (-int(self.rescue_after * 1e6), read)))
        if len(blocks) == 1:
            cursor.execute(*blocks[0])
        else:   # (any row says "claim", but SQLite's orphan candidates: the first will do)
            cursor.execute(self.dialect.union(sql for sql, _ in blocks) + (' LIMIT 1' if locks else ''),
                           [p for _, params in blocks for p in params])
        rows = cursor.fetchall()
        orphaned = any(not due and self._orphaned(worker, lease_over) for due, worker, lease_over in rows)
        if orphaned:
            self._local.rescue = True
        return orphaned or any(due for due, _, _ in rows)

    def _orphaned(self, worker: str | None, lease_over: Any = False) -> bool:
        """Whether a claim older than rescue_after, read with SKIP LOCKED where rows are locked, is
        a dead worker's: there, that no transaction holds it says so; on SQLite, that the process
        named by its worker id (host:pid:thread) has ended, which only a worker on the same host
        can tell, or else that its lease is over (a claim written before 0.4, or on another host,
        or by a live process that never ran it: the claim then takes it like any due task)."""
        return self.dialect.row_locks or _process_alive(worker) is False or bool(lease_over)

    def _pairs(self, cursor: Any, idle: bool = False) -> list[tuple[str, int]]:
        """The (queue, priority) pairs to claim from, smallest priority first: every priority in
        use (one index dive each), looked up again every PRIORITY_REFRESH seconds (five times
        that while idle), and those the tasks declare."""
        now = time.monotonic()
        if now - self._priorities_at > PRIORITY_REFRESH * (5 if idle else 1):
            queues = self._served_queues()
            in_use = {(q, 0) for q in queues} | {   # and those the tasks declare
                (task.queue or self.registry.queue, task.priority) for task in self.registry.tasks.values()
                if (task.queue or self.registry.queue) in queues}
            for queue in queues:
                in_use.update((queue, priority) for priority in self.registry._priorities_in_use(cursor, self.dialect, queue))
            self._priorities = sorted(in_use, key=lambda pair: (pair[1], pair[0]))
            self._priorities_at = now
        return self._priorities

    def _go_idle(self) -> None:
        """After an empty claim: autocommit, so polling is one statement each, with no transaction
        (nor its metadata lock) held open between polls. Only on the worker's own connections."""
        conn = getattr(self._local, 'connection', None)
        if conn is not None and 'transaction' not in self.hooks:
            self.dialect.idle(conn, True)
            self._local.idle = True

    def _wait_idle(self, seconds: float) -> None:
        """Wait between polls; on PostgreSQL a NOTIFY from a committed enqueue ends the wait early."""
        conn = getattr(self._local, 'connection', None)
        if conn is None or not getattr(self._local, 'idle', False) or not self.dialect.notify:
            self._stopping.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        try:
            # in slices, so that stop() from another thread is seen within NOTIFY_WAIT_SLICE
            while not self._stopping.is_set() and time.monotonic() < deadline:
                if _await_notification(conn, min(NOTIFY_WAIT_SLICE, deadline - time.monotonic())):
                    return
        except Exception as exc:   # the next probe meets the same trouble and deals with it
            logger.debug('waiting for a notification failed (%s)', _describe_error(exc, short=True))
            self._stopping.wait(seconds)

    def _idle_wait(self, polled_at: float) -> float:
        """Seconds until the next poll: the poll interval, jittered, from `polled_at`, when the
        steps since the last wait began (so neither the empty poll nor the batches found before it
        add to the wait of the next task: at 200 tasks/s and a 10 ms interval, half a millisecond
        of the median latency on SQLite); but at least half an interval, so that a poll slower
        than the interval is not repeated back to back. Less if a cron fires sooner."""
        interval = _jittered(self.poll_interval)
        wait = max(interval / 2, polled_at + interval - time.monotonic())
        if self.scheduler:
            wait = min(wait, max(0.0, self.scheduler.seconds_to_next()))
        return wait

    def _vet(self, task_id: int, name: str, args: str, attempts: int, queue: str,
             eta: dt.datetime, errors: str | None) -> _Claim | str:
        """A claim for a row that can run, or the reason it cannot. Nothing named by a row is
        imported or called unless it is in the registry."""
        task = self.registry.tasks.get(name)
        if task is None:
            return f'UnknownTask: no task named {name!r} is registered in this worker'
        try:
            call = json.loads(args)
        except (TypeError, ValueError, RecursionError) as exc:
            return f'BadArguments: args are not valid JSON ({exc.__class__.__name__}: {str(exc)[:200]})'
        if call is None:
            call = []
        if not isinstance(call, (list, dict)):
            return f'BadArguments: args must be a JSON list or object, not {type(call).__name__}'
        problem = task.check_call(call)
        if problem:
            return f'BadArguments: {name}() cannot take these arguments: {problem}'
        if attempts > task.retries:
            return (f'Lost: all {attempts} attempts were begun and the last never finished '
                    '(the worker died or lost its connection while running it)')
        return _Claim(task_id, task, call, queue, attempts + 1, eta, errors)

    # Running

    def _process(self, claimed: list[_Claim], claim_outcomes: Sequence[_Outcome] = ()) -> None:
        """Run claimed tasks in one transaction, each in a savepoint (if it reads its connection),
        and delete the completed ones in the commit that also commits their writes. The
        transaction locks only its own rows (by primary key): no range scan whose locks another
        worker could be waiting on. Outcomes are logged once committed: an operator reads the log
        as the record of what happened; the claim's own (rows it buried or rescued) once the batch
        holds its rows, since until then a slow log handler or hook would make its claims look like
        a dead worker's."""
        attempts: list[tuple[_Claim, dict, _Outcome | None]] = []
        savepoints: list[int] = []   # the attempts that took theirs (that read their connection)
        unreported = list(claim_outcomes)
        try:
            with self._transaction() as conn, _cursor(conn) as cursor:
                held = self._lock(cursor, claimed)
                self._report_all(unreported)
                began = time.monotonic()
                for claim in claimed:
                    if held.get(claim.id) != claim.attempt:
                        logger.warning('task %s %s: its claim was lost before it ran (its lease of %gs ended, or '
                                       'it was rescued after %gs); skipped', claim.id, claim.task.name, self.lease,
                                       self.rescue_after or self.lease)
                    elif attempts and time.monotonic() - began > BATCH_SECONDS:
                        self._release(cursor, claim)
                    else:   # the savepoints are numbered by the tasks that run: mqueue_0 is the first's
                        savepoint = _Savepoint(conn, cursor, len(attempts), savepoints)
                        attempts.append(self._execute(savepoint, claim, claimed))
                outcomes = []
                if attempts:
                    if savepoints:   # (no task had the connection: none could have lost it)
                        self._check_transaction(cursor, attempts, savepoints)
                    if self._cluster:
                        self._check_claims(cursor, attempts)
                    outcomes = self._complete(cursor, attempts)
        except _TransactionLost as lost:
            self._recover(claimed, lost)
            return
        except _ClaimsLost as lost:   # (rolled back: its writes, and what it recorded)
            logger.warning('%s; the batch is rolled back, and its other tasks go back to the queue', lost)
            self._hand_back(claimed)   # (each only if the claim is still ours)
            return
        except _TimedOut as timed_out:   # its transaction is over: rolled back, or its session gone
            if self.dialect.kill:
                self._discard_connection()
                if timed_out.watch.given_up:   # recorded when it was given up
                    return
            self._record_timeout(claimed, timed_out.watch)
            return
        except _ColdShutdown:
            self._hand_back(claimed)
            raise
        except Exception as exc:
            if attempts:
                logger.warning('tasks %s: the transaction they ran in failed (%s); none of their outcomes was '
                               'recorded, and they run again', ', '.join(str(claim.id) for claim, _, _ in attempts),
                               _describe_error(exc, short=True))
            raise
        finally:   # the batch failed before it held its rows: what its claim did was committed all the same
            self._report_all(unreported)
        self._report_all(outcomes)

    def _check_claims(self, cursor: Any, attempts: list[tuple[_Claim, dict, _Outcome | None]]) -> None:
        """Galera, before the batch commits: lock its rows (from here on a claim from another node
        aborts this transaction) and make sure each is still this batch's claim. A task whose lease
        ended while it ran (its renewal failed) may have been claimed, and run, by another worker
        since; then this batch must not commit."""
        claims = [claim for claim, _, _ in attempts]
        rows = self._claims_read(cursor, claims, SQL_LOCK)
        lost = [claim for claim in claims if claim.id not in rows or rows[claim.id][0] != claim.attempt
                or not (claim.settled or rows[claim.id][1])]   # (a settled row: this batch wrote it)
        if lost:
            raise _ClaimsLost(f'tasks {", ".join(str(claim.id) for claim in lost)}: claimed by another worker while they '
                              f'ran here (their lease of {self.lease:g}s ended: it could not be renewed)')

    def _lock(self, cursor: Any, claimed: list[_Claim]) -> dict[int, int]:
        """Lock the batch's rows (on a Galera cluster, read them); the attempt count of each still
        claimed."""
        rows = self._claims_read(cursor, claimed, SQL_CHECK_CLAIMS if self._cluster else SQL_LOCK)
        return {task_id: attempts for task_id, (attempts, still_claimed) in rows.items() if still_claimed}

    def _claims_read(self, cursor: Any, claims: list[_Claim], statement: str) -> dict[int, tuple[int, bool]]:
        """Claimed rows, by SQL_CHECK_CLAIMS or SQL_LOCK: id -> (attempts, whether still claimed)."""
        cursor.execute(self._sql(statement, ids=len(claims)), [claim.id for claim in claims])
        return {task_id: (attempts, bool(still_claimed)) for task_id, attempts, still_claimed in cursor.fetchall()}

    def _execute(self, savepoint: _Savepoint, claim: _Claim,
                 batch: list[_Claim]) -> tuple[_Claim, dict, _Outcome | None]:
        """Run one task in a savepoint (taken as it starts, or as it first reads its connection);
        on failure roll back to it and record the retry. Returns the attempt: its claim, the
        event's fields, and its outcome if it failed (one that returned completes with its
        batch)."""
        if self._abandon_signal is not None:   # a second signal came between tasks: start no more
            raise _ColdShutdown(self._abandon_signal)
        conn, cursor = savepoint.conn, savepoint.cursor
        if self._eager_savepoints:
            savepoint.take()
        context = claim.context(savepoint, self)
        timeout = self._timeout_of(claim)
        watch = self._watch(conn, cursor, claim, batch, timeout) if timeout is not None else None
        started = time.perf_counter()
        try:
            # A context of its own per task: current() and whatever the task sets in context
            # variables end with it, even if it is interrupted.
            error, claim.kept = contextvars.copy_context().run(self._call, claim, context)
        finally:
            timed_out = watch is not None and self._unwatch(watch)
        if timed_out:   # whatever it returned, the attempt is the timeout's
            if not self.dialect.kill:   # (at once: a transaction hook may roll back on an Exception only)
                conn.rollback()
            raise _TimedOut(watch)
        info = {'duration': time.perf_counter() - started}
        if error is None:
            return claim, info, None
        info.update(error=_describe_error(error), exception=error)
        conflict = _lock_conflict(error)
        try:
            if savepoint.taken:   # (else the task never had the connection: nothing of its to undo)
                cursor.execute(SQL_ROLLBACK_TO_SAVEPOINT.format(n=savepoint.index))
        except Exception:
            raise _TransactionLost([claim], info, conflict) from error
        if conflict:   # a deadlock or lock-wait timeout is the database's doing: again, uncounted
            self.stats['lock_conflicts'] += 1
            self.stats['task_conflicts'] += 1
            return claim, info, self._release(cursor, claim, info)
        return claim, info, self._retry_or_bury(cursor, claim, info)

    def _call(self, claim: _Claim, context: TaskContext) -> tuple[BaseException | None, str | None]:
        """Call the task (inside its own context); returns the exception it raised, if any, be it
        SystemExit or KeyboardInterrupt: a task cannot stop its worker (only a second signal can);
        and for a task that keeps its result, what it returned as JSON (a value that is not JSON
        fails the attempt)."""
        _current.set(context)
        kept = None   # (an around_task hook may swallow the task's exception: it succeeded then)
        if 'task_started' in self.hooks:
            self._emit('task_started', claim.context(None, self), {})
        self._local.in_task = True
        try:
            with self.hooks['around_task'](context) if 'around_task' in self.hooks else contextlib.nullcontext():
                if isinstance(claim.call, list):
                    value = claim.task.func(*claim.call)
                else:
                    value = claim.task.func(**claim.call)
                if inspect.isawaitable(value):   # an async def (or a function returning a coroutine)
                    value = self._run_coroutine(value)
                kept = _encode_result(claim.task, value) if claim.task.result is not None else None
        except _ColdShutdown:
            raise
        except BaseException as exc:   # SystemExit, KeyboardInterrupt... raised by a task are its failure
            return exc, None
        finally:
            self._local.in_task = False
        return None, kept

    # Timeouts: the watchdog (a thread of its own) ends the session of a task past its timeout;
    # a thread of their own then records the batch: the task failed, its batch-mates go back.

    def _watch(self, conn: Any, cursor: Any, claim: _Claim, batch: list[_Claim], timeout: float) -> _Watch:
        """Have the watchdog time this task out, with what it needs to end its session: its id
        (MySQL, PostgreSQL), or (SQLite) a progress handler, set on the connection once, that fails
        the statements of this thread's task once it has timed out: the one it runs, and any it
        starts after."""
        connection_id = getattr(self._local, 'connection_id', None)
        if self.dialect.kill:
            self._refuse_unenforceable_timeouts()
            if 'transaction' in self.hooks:   # the hook's connection: which session it is
                cursor.execute(self.dialect.connection_info)
                connection_id = cursor.fetchone()[0]
        elif not hasattr(conn, 'set_progress_handler'):
            raise MQueueError(f'{claim.task.name} has a timeout, which on SQLite needs the sqlite3 connection itself '
                              '(its progress handler ends the statements of a task past its timeout)')
        watch = _Watch(claim, batch, timeout, conn, connection_id)
        self._watchdog.watch(watch)
        local = self._local
        if not self.dialect.kill and getattr(local, 'progress_on', None) is not conn:   # once per connection
            conn.set_progress_handler(lambda: (w := getattr(local, 'watch', None)) is not None and w.timed_out,
                                      SQLITE_PROGRESS_STEPS)
            local.progress_on = conn
        local.watch = watch
        return watch

    def _unwatch(self, watch: _Watch) -> bool:
        """The task returned: whether it had been timed out; if so, once its session is gone (so
        that ending it cannot fall on a later transaction of its connection)."""
        timed_out = self._watchdog.forget(watch)
        self._local.watch = None   # (the progress handler lets its statements, and the rollback, run)
        if self.dialect.kill and timed_out:
            watch.ended.wait()   # (set whatever becomes of the attempt to end it)
        return timed_out

    def _record_timeout(self, claimed: list[_Claim], watch: _Watch) -> None:
        """Record a timed-out task's batch, its transaction over (a new connection, on MySQL and
        PostgreSQL): the task failed with TaskTimeout, its batch-mates go back uncounted, each
        only while its claim is still ours. A failure leaves them to a rescue or their lease
        (never handed back: that would not count the attempt)."""
        error = TaskTimeout(f'{watch.claim.task.name}() ran past its timeout of {watch.timeout:g}s; its database '
                            'session was ended, and its writes rolled back')
        info = {'duration': time.monotonic() - watch.started, 'error': _describe_error(error), 'exception': error}
        try:
            self._recover(claimed, _TransactionLost([watch.claim], info))
        except Exception as exc:
            logger.error('%s: could not record its timeout (%s); it returns when rescued or its lease ends',
                         _attempt(watch.claim.context(None, self)), _describe_error(exc, short=True))

    def _timed_out(self, watch: _Watch) -> None:
        """Called by the watchdog (holding its lock) when a task runs past its timeout: its session
        is ended by a thread of its own (MySQL, PostgreSQL); on SQLite, its statements fail from
        now on."""
        logger.warning('%s ran past its timeout of %gs; %s', _attempt(watch.claim.context(None, self)), watch.timeout,
                       'ending its database session' if self.dialect.kill else 'its statements fail from now on')
        if watch.cancel is not None:   # an async task: cancelled where it awaits
            watch.cancel()
        if self.dialect.kill:
            try:
                threading.Thread(target=self._end_session, args=(watch,), name=f'mqueue-timeout-{watch.claim.id}',
                                 daemon=True).start()
            except BaseException:
                watch.ended.set()
                raise

    def _end_session(self, watch: _Watch) -> None:
        """In a thread of its own: end the session of a task past its timeout, from a connection of
        its own (its transaction rolls back and its row locks go), and wait, up to TIMEOUT_GRACE,
        until the server has let it go (both servers end a session asynchronously)."""
        try:
            with self._transaction() as conn, _cursor(conn) as cursor:
                cursor.execute(self.dialect.kill, (watch.connection_id,))
            gone_by = time.monotonic() + TIMEOUT_GRACE
            while time.monotonic() < gone_by:
                with self._transaction() as conn, _cursor(conn) as cursor:   # (a transaction each: PostgreSQL's
                    cursor.execute(self.dialect.session_exists, (watch.connection_id,))   # view is a snapshot)
                    if not cursor.fetchone()[0]:
                        break
                time.sleep(0.005)
        except Exception as exc:
            logger.error('%s: could not end its session (%s); it returns when rescued or its lease ends',
                         _attempt(watch.claim.context(None, self)), _describe_error(exc, short=True))
        finally:
            watch.ended.set()
            self._watchdog.grant_grace(watch)
            self._discard_connection()

    def _give_up(self, watch: _Watch) -> None:
        """Called by the watchdog (holding its lock): a task past its timeout has not returned
        TIMEOUT_GRACE seconds after its session was ended (SQLite: after it timed out). Python code
        that never returns to the database cannot be stopped from another thread: record its batch
        (MySQL, PostgreSQL: its session is gone; on SQLite it holds the write lock), stop taking
        tasks, and have ``run()`` raise, for a supervisor to restart the process."""
        context = watch.claim.context(None, self)
        self._given_up = (f'{_attempt(context)} ran past its timeout of {watch.timeout:g}s and did not return '
                          f'within {TIMEOUT_GRACE:g}s of being timed out (Python code that never returns to the '
                          'database cannot be stopped from another thread): the worker stopped, for its supervisor '
                          'to restart it')
        logger.error('%s', self._given_up + ('; until this process exits, its transaction holds the database\'s '
                                             'write lock' if not self.dialect.kill else ''))
        watch.given_up = True
        if self.dialect.kill:   # (run() waits for it before it returns: listed before the thread is let go)
            recording = threading.Thread(target=self._record_given_up, args=(watch,), daemon=True,
                                         name=f'mqueue-timeout-{watch.claim.id}')
            self._recording.append(recording)
            recording.start()
        self._lost_threads.add(watch.thread)
        self._stopping.set()

    def _record_given_up(self, watch: _Watch) -> None:
        try:
            self._record_timeout(watch.claimed, watch)
        finally:
            self._discard_connection()

    def _run_coroutine(self, coroutine: Any) -> Any:
        """Run an async task to completion in this worker thread's event loop (one per thread, kept
        between tasks), in the task's context (current() works in it). A timeout cancels it."""
        if asyncio._get_running_loop() is not None:
            coroutine.close()
            raise MQueueError('an async task cannot run in a thread whose event loop is running: run the worker in a '
                              'thread or process of its own')
        loop = getattr(self._local, 'event_loop', None)
        if loop is None:
            loop = self._local.event_loop = asyncio.new_event_loop()
        running = asyncio.ensure_future(coroutine, loop=loop)
        watch = getattr(self._local, 'watch', None)
        if watch is not None:   # (under the watchdog's lock, as it times tasks out there)
            with self._watchdog.changed:
                watch.cancel = functools.partial(loop.call_soon_threadsafe, running.cancel)
                if watch.timed_out:
                    running.cancel()
        try:
            return loop.run_until_complete(running)
        finally:   # what it started and left running ends with it, as asyncio.run() ends it: its
            left = asyncio.all_tasks(loop)   # transaction, current() included, is over
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))

    def _close_event_loop(self) -> None:
        loop = self._local.__dict__.pop('event_loop', None)
        if loop is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _check_transaction(self, cursor: Any, attempts: list[tuple[_Claim, dict, _Outcome | None]],
                           savepoints: list[int]) -> None:
        """Fail the batch if its transaction was lost under a task that returned normally: one of
        the suspects, the attempts that took a savepoint (that had the connection)."""
        try:
            cursor.execute(SQL_RELEASE_SAVEPOINT.format(n=savepoints[0]))
        except Exception as exc:
            suspects = [attempts[index] for index in savepoints]
            alone = suspects[0][0] if len(suspects) == 1 else None
            culprit = f'{alone.task.name}() returned, but' if alone else 'a task of this batch returned, but'
            info = {'duration': sum(info['duration'] for _, info, _ in suspects), 'exception': None,
                    'error': f'TransactionLost: {culprit} the transaction it ran in had been rolled back or '
                             'committed under it (a deadlock or lost connection it caught, or its own '
                             f'commit/rollback), so its writes cannot complete it ({_describe_error(exc, short=True)})'}
            # A deadlock error here is the database's doing (a Galera cluster aborts a transaction
            # whose rows another node's commit took, between its statements): nobody's failure.
            raise _TransactionLost([claim for claim, _, _ in suspects], info, conflict=_lock_conflict(exc)) from exc

    def _recover(self, claimed: list[_Claim], lost: _TransactionLost) -> None:
        """The batch's transaction is gone: record the failure that caused it and hand the other
        tasks back uncounted; if which task caused it is unknown, every suspect (each task that
        read its connection) gets the failure, and as a retried task runs alone, the next round
        tells them apart. Each write applies only while the claim is still ours, so a claim
        rescued or out of its lease meanwhile is left to whoever holds it now. If this fails too,
        a rescue (or the lease) brings every task back."""
        outcomes = []
        known = lost.suspects[0] if len(lost.suspects) == 1 else None
        suspects = {claim.id for claim in lost.suspects}
        if lost.conflict:
            self.stats['lock_conflicts'] += 1
            self.stats['task_conflicts'] += 1
            logger.info('%s hit a deadlock; its batch runs again (%s)',
                        f'task {known.id} {known.task.name}' if known else 'a task of a batch',
                        lost.info['error'].splitlines()[0])
        with self._transaction() as conn, _cursor(conn) as cursor:
            held = self._lock(cursor, claimed)
            for claim in claimed:
                if held.get(claim.id) != claim.attempt:
                    continue
                if not lost.conflict and claim.id in suspects:
                    outcomes.append(self._retry_or_bury(cursor, claim, lost.info, at_once=known is None))
                else:
                    self._release(cursor, claim)
        for outcome in outcomes:
            self._report(outcome)

    def _hand_back(self, claimed: list[_Claim]) -> None:
        """Release claimed tasks that did not complete, in a transaction of their own; a lock
        conflict is tried again a few times; best effort (a rescue, or the lease, is the net)."""
        for attempt in range(3):
            try:
                with self._transaction() as conn, _cursor(conn) as cursor:
                    for claim in claimed:
                        self._release(cursor, claim)
                return
            except Exception as exc:
                if _lock_conflict(exc) and attempt < 2:
                    self.stats['lock_conflicts'] += 1
                    continue
                logger.warning('could not hand back %d tasks (%s); they return when rescued or their lease ends',
                               len(claimed), _describe_error(exc, short=True))
                return

    # Outcomes: one method each, which runs its statement in the transaction the attempt ran in
    # and returns its log line and event, reported once that transaction commits.

    def _complete(self, cursor: Any, attempts: list[tuple[_Claim, dict, _Outcome | None]]) -> list[_Outcome]:
        """The tasks that returned succeeded: their rows go in the commit of their writes (one
        statement for the batch). Returns every attempt's outcome, in the batch's order."""
        done = [claim.id for claim, _, outcome in attempts if outcome is None]
        self._keep_results(cursor, 'succeeded', [(claim.id, claim.task, claim.kept) for claim, _, outcome
                                                 in attempts if outcome is None and claim.task.result is not None])
        if done:
            cursor.execute(self._sql(SQL_COMPLETE, ids=len(done)), done)
        outcomes = []
        for claim, info, outcome in attempts:
            if outcome is None:
                context = claim.context(None, self)
                outcome = _Outcome(context, logging.INFO, '%s succeeded in %.1f ms',
                                   (_attempt(context), info['duration'] * 1000), 'task_succeeded', info)
            outcomes.append(outcome)
        return outcomes

    def _retry_or_bury(self, cursor: Any, claim: _Claim, info: dict, at_once: bool = False) -> _Outcome:
        """A failed attempt: retried after a back-off (or at once), or buried once the task's
        retries are used up."""
        claim.settled = True
        if claim.attempt > claim.task.retries:
            return self._bury(cursor, claim.context(None, self), info, claim.errors)
        return self._retry(cursor, claim, info, 0.0 if at_once else backoff(claim.task.backoff, claim.attempt))

    def _retry(self, cursor: Any, claim: _Claim, info: dict, delay: float) -> _Outcome:
        """A task failed: due again after ``delay`` seconds, with its error kept."""
        context = claim.context(None, self)
        cursor.execute(self._sql(SQL_RETRY), (int(delay * 1e6), _cut(info['error']),
                                             _errors_after(claim.errors, context, info), claim.id))
        return _Outcome(context, logging.WARNING, '%s failed in %.1f ms; retry in %.1fs:\n%s',
                        (_attempt(context), info['duration'] * 1000, delay, info['error']), 'task_failed', info)

    def _bury(self, cursor: Any, context: TaskContext, info: dict, errors: str | None, ran: bool = True) -> _Outcome:
        """A task gave up: its last attempt failed with no retry left, or (``ran=False``) its row
        cannot run at all. Kept, never claimed again, until brought back."""
        task = self.registry.tasks.get(context.name)
        keep_key = int(task is not None and task.unique_while_dead)
        cursor.execute(self._sql(SQL_BURY), (_cut(info['error']), _errors_after(errors, context, info), keep_key,
                                             context.id))
        if task is not None and task.result is not None:   # (a row naming no task keeps nothing)
            self._keep_results(cursor, 'dead', [(context.id, task, None)])
        if ran:
            return _Outcome(context, logging.ERROR, '%s failed in %.1f ms; it is dead:\n%s',
                            (_attempt(context), info['duration'] * 1000, info['error']), 'task_dead', info)
        return _Outcome(context, logging.ERROR, 'task %s %s is dead: %s',
                        (context.id, context.name, info['error'].splitlines()[0]), 'task_dead', info)

    def _keep_results(self, cursor: Any, status: str, kept: list[tuple[int, Task, str | None]]) -> None:
        """Write the results of these tasks (id, task, value as JSON), from their rows, before the
        rows go: in the commit that ends them; one statement."""
        if not kept:
            return
        notify = (f'{self.registry.result_table}:',) if self.dialect.notify else ()
        rows = [p for task_id, task, value in kept for p in (task_id, value, int(task.result * 1e6))]
        cursor.execute(self._sql(SQL_KEEP_RESULTS, kept=len(kept)), (status, *rows, *notify))

    def _release(self, cursor: Any, claim: _Claim, info: dict | None = None) -> _Outcome | None:
        """A claimed task goes back uncounted, due at once, if the claim is still ours: it did not
        run (shutdown, a batch out of time, a lost batch), or (with ``info``) it hit a lock
        conflict, the database's doing and nobody's fault, which is logged and no event."""
        claim.settled = True
        cursor.execute(self._sql(SQL_RELEASE), (claim.id, claim.attempt))
        if info is None:
            return None
        context = claim.context(None, self)
        return _Outcome(context, logging.INFO, '%s hit a lock conflict; it runs again (%s)',
                        (_attempt(context), info['error'].splitlines()[0]), None, info)

    def _report_all(self, outcomes: list[_Outcome]) -> None:
        """Report these outcomes, and forget them (so that none is reported twice)."""
        while outcomes:
            self._report(outcomes.pop(0))

    def _report(self, outcome: _Outcome) -> None:
        """Log an attempt's outcome, count it, and emit its event; called once the outcome has
        committed."""
        logger.log(outcome.level, outcome.message, *outcome.args)
        if outcome.event in ENDINGS_COUNTED:
            minute = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
            succeeded = outcome.event == 'task_succeeded'
            with self._counts_lock:
                if not self._counts:   # (written COUNTS_EVERY seconds after the first task they count, at most)
                    self._counts_at = max(self._counts_at, time.monotonic() + COUNTS_EVERY)
                done, failed = self._counts.get((outcome.context.queue, minute), (0, 0))
                self._counts[outcome.context.queue, minute] = (done + succeeded, failed + (not succeeded))
        if outcome.event:
            self._emit(outcome.event, outcome.context, outcome.info)

    def _write_counts(self, last: bool = False) -> bool:
        """Add the tasks the worker saw end to the counts' table (the throughput), at most every
        COUNTS_EVERY seconds (``last``: now, as a thread stops), and delete the minutes past
        COUNTS_KEPT about once a minute: in a short transaction of their own, never a claim's or a
        batch's, so counting neither delays nor rolls back a task, and a write that fails costs
        nothing but its counts (kept for the next write if the failure is transient). A table
        without it (made before it existed), out of reach, or failing otherwise, is said once
        (until a write succeeds) and looked at again COUNTS_LOOK_AGAIN seconds later, when there
        are counts to write; meanwhile nothing is counted. Minutes are the worker's clock's.
        (The purge first: its scan locks every row of the table on MySQL, and a transaction
        that held some of them already could deadlock with another's purge.) Returns whether it
        used a transaction."""
        now = time.monotonic()
        with self._counts_lock:
            if not self._counts or (now < self._counts_at and not last):
                return False
            counts, self._counts, self._counts_at = self._counts, {}, now + COUNTS_EVERY
            if self._counts_table is False and now < self._counts_look_at:
                return False   # (dropped: nowhere to write them)
        try:   # (its commit need not wait for the disk: they draw a picture, not a ledger)
            with self._transaction(lazy=True) as conn, _cursor(conn) as cursor:
                if self.dialect.lazy_commit:
                    cursor.execute(self.dialect.lazy_commit)
                if not self._counts_table:
                    cursor.execute(self.dialect.has_table, (self.registry.counts_table,))
                    if not cursor.fetchone()[0]:
                        self._counts_fail(now, 'is missing, or this account cannot see it (`mqueue init-db` adds it; '
                                               'a worker account needs row privileges on it)')
                        return True
                    self._counts_table = True
                if now >= self._counts_purge_at:
                    self._counts_purge_at = now + 60
                    oldest = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=COUNTS_KEPT)
                    cursor.execute(self._sql(SQL_PURGE_COUNTS), (self.dialect.stamp(oldest),))
                for (queue, minute), (done, failed) in sorted(counts.items()):   # (in key order: no deadlock)
                    cursor.execute(self._sql(SQL_COUNT_ENDED), (queue, self.dialect.stamp(minute), done, failed))
            self._counts_warned = False
        except Exception as exc:
            if _retryable(exc) and not last:
                with self._counts_lock:
                    for key, (done, failed) in counts.items():
                        before = self._counts.get(key, (0, 0))
                        self._counts[key] = (before[0] + done, before[1] + failed)
                logger.info('throughput counts not written (%s); trying again', _describe_error(exc, short=True))
            elif _retryable(exc):
                logger.info('the last throughput counts were not written (%s)', _describe_error(exc, short=True))
            else:
                self._counts_fail(now, f'cannot be written ({_describe_error(exc, short=True)})')
        return True

    def _counts_fail(self, now: float, why: str) -> None:
        """The counts' table cannot be used: said once until a write succeeds; looked at again later."""
        if not self._counts_warned:
            self._counts_warned = True
            logger.warning('no throughput counts: table %s %s; looked at again in %gs',
                           self.registry.counts_table, why, COUNTS_LOOK_AGAIN)
        self._counts_table, self._counts_look_at = False, now + COUNTS_LOOK_AGAIN

    def _emit(self, event: str, context: TaskContext, info: dict) -> None:
        hook = self.hooks.get(event)
        if hook is None:
            return
        try:
            hook(context, **info)
        except Exception:
            logger.exception('the %s hook failed; carrying on', event)

    # Connections and signals

    @contextlib.contextmanager
    def _own_transaction(self, lazy: bool = False) -> Iterator[Any]:
        """The default transaction hook: this thread's connection, committed or rolled back;
        ``lazy``: a transaction whose commit need not wait for the disk (the claim's)."""
        conn = getattr(self._local, 'connection', None)
        if conn is None:
            conn = self._open()
        elif getattr(self._local, 'idle', False):
            self.dialect.idle(conn, False)
            self._local.idle = False
        try:
            if self.dialect.begin:
                with _cursor(conn) as cursor:
                    self._set_synchronous(cursor, lazy)
                    cursor.execute(self.dialect.begin)
            yield conn
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                self._discard_connection()
            raise
        conn.commit()

    def _set_synchronous(self, cursor: Any, lazy: bool) -> None:
        """SQLite: before a transaction begins, the level at which its commit waits for the disk:
        NORMAL for a lazy one if the connection's own is higher, else the connection's own (as
        read when it opened). Sent only when it changes: twice a batch while draining."""
        own = getattr(self._local, 'synchronous', None)
        if own is None or own <= SQLITE_NORMAL:
            return
        level = SQLITE_NORMAL if lazy else own
        if level != self._local.synchronous_now:
            cursor.execute(f'PRAGMA synchronous = {level}')
            self._local.synchronous_now = level

    def _learn_cluster(self, cursor: Any) -> None:
        """On a connection's first use: whether the server is a Galera cluster's node (learnt
        once), and if so, the session set up for it."""
        dialect = self.dialect
        if not dialect.cluster_probe:
            return
        if self._cluster is None:
            cursor.execute(dialect.cluster_probe)
            self._cluster = _setting_on(cursor.fetchone())
            if self._cluster:
                if self.isolation and self.isolation.upper() in dialect.locking_reads_at:
                    raise MQueueError(f'on a Galera cluster a running batch must not lock its rows, which '
                                      f'{self.isolation.upper()} reads do: leave isolation unset, or READ COMMITTED')
                logger.info('a Galera cluster\'s node: its row locks are not seen by the other nodes, so the lease '
                            '(%gs) fences running tasks, renewed every %gs while they run; a dead worker\'s tasks are '
                            'due again when it ends (no rescue)', self.lease, self.lease * LEASE_RENEW_AT)
                # Another node's commit can abort the batch between any two of its statements: a
                # savepoint taken before each task meets such an abort outside the task's code
                # (taken inside it, as the task reads its connection, it would be the task's failure).
                self._eager_savepoints = True
        if self._cluster and dialect.snapshot_check:
            cursor.execute(dialect.snapshot_check)
            if _setting_on(cursor.fetchone()):
                cursor.execute(dialect.snapshot_off)

    @contextlib.contextmanager
    def _hook_transaction(self, lazy: bool = False) -> Iterator[Any]:
        """The transaction hook's transaction; its connection tells the dialect if none was given
        (and, once, whether it is a Galera cluster's node)."""
        with self.hooks['transaction']() as conn:
            if self.dialect is None:
                self.dialect = self.registry.dialect_of(conn)
            if self._cluster is None and self.dialect.cluster_probe:
                with _cursor(conn) as cursor:
                    self._learn_cluster(cursor)
            if self.dialect.begin and not getattr(conn, 'in_transaction', True):   # SQLite: take the write lock
                with _cursor(conn) as cursor:
                    cursor.execute(self.dialect.begin)
            yield conn

    def _open(self) -> Any:
        """A new connection of this thread's, set up for the worker: transactional, the chosen
        isolation, no idle timeout that could drop a long task's row lock, and on PostgreSQL
        listening for enqueues."""
        conn = self.connect()
        if self.dialect is None:
            self.dialect = self.registry.dialect_of(conn)
        dialect = self.dialect
        dialect.take_over(conn)
        try:
            with _cursor(conn) as cursor:
                if self.isolation:
                    if not dialect.isolation:
                        raise MQueueError(f'{dialect.name} has no isolation levels to choose from; leave isolation unset')
                    cursor.execute(dialect.isolation.format(level=self.isolation.upper()))
                cursor.execute(dialect.connection_info)
                self._local.connection_id, version = cursor.fetchone()
                problem = dialect.refusal(str(version))
                if problem:
                    raise MQueueError(problem)
                for statement in dialect.setup(str(version)):
                    cursor.execute(statement)
                if dialect.listen and not self._rotated:   # (a rotation never waits on one database's
                    cursor.execute(dialect.listen)          # notifications: they would pile up unread)
                self._learn_cluster(cursor)
                cursor.execute(dialect.whereabouts)
                where = cursor.fetchone()[0]
                if dialect.synchronous:
                    cursor.execute(dialect.synchronous)
                    row = cursor.fetchone()
                    self._local.synchronous = self._local.synchronous_now = row[0] if row else None
            conn.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self._local.connection = conn
        again = getattr(self._local, 'opened', False)
        self._local.opened = True
        connection_id = self._local.connection_id
        logger.info('%s to %s %s at %s%s', 'reconnected' if again else 'connected', dialect.name,
                    ' '.join(str(version).split()[:2]), where,
                    f' (connection {connection_id})' if connection_id is not None else '')
        return conn

    def _discard_connection(self) -> None:
        conn = getattr(self._local, 'connection', None)
        if conn is not None and isinstance(self.connect, _SharedConnection):   # the caller's level, as it was
            with contextlib.suppress(Exception), _cursor(conn) as cursor:
                self._set_synchronous(cursor, lazy=False)
        self._local.connection, self._local.idle = None, False
        if conn is not None and not isinstance(self.connect, _SharedConnection):
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """First signal: stop after the running tasks. Second: abandon them. The handler raises
        only into task code; anywhere else (a commit, say) it leaves a flag that the worker acts
        on at the next step, so no bookkeeping is cut in half."""
        self._signals += 1
        self._stopping.set()
        name = signal.Signals(signum).name
        if self._signals == 1:
            logger.warning('%s: finishing the running tasks, then stopping (send it again to abandon them)', name)
            return
        logger.warning('%s again: abandoning the running tasks; they return to the queue', name)
        for worker in (self, *self._databases):
            worker._abandon_signal = signum
        if getattr(self._local, 'in_task', False):
            raise _ColdShutdown(signum)

    def _abandon_threads(self) -> None:
        """Cold shutdown with threads: end their transactions by killing their connections (so
        their row locks go), then hand their tasks back uncounted. Best effort: a rescue is the
        net. Not possible with a transaction hook (its connections are not the worker's)."""
        inflight = list(self._inflight.values())
        if not inflight or 'transaction' in self.hooks or self.dialect is None or not self.dialect.kill:
            return   # SQLite: the process exits, and its uncommitted transactions go with it
        try:
            conn = self.connect()
            try:
                with _cursor(conn) as cursor:
                    for connection_id, _, _ in inflight:
                        if connection_id is not None:
                            with contextlib.suppress(Exception):
                                cursor.execute(self.dialect.kill, (connection_id,))
                    for _, claimed, _ in inflight:
                        for claim in claimed:
                            self._release(cursor, claim)
                conn.commit()
            finally:
                conn.close()
        except Exception as exc:
            logger.warning('could not hand back the abandoned tasks (%s); they return when rescued or their '
                           'lease ends',
                           _describe_error(exc, short=True))


def _setting_on(row: Sequence | None) -> bool:
    """Whether a SHOW VARIABLES row says ON (mysql-connector may give its value as bytes)."""
    value = row[1] if row else ''
    return (value.decode() if isinstance(value, (bytes, bytearray)) else str(value)).upper() == 'ON'


class _SharedConnection:
    """A connect callable for a Worker given one open connection: it always returns that one."""

    def __init__(self, conn: Any):
        self.conn = conn

    def __call__(self) -> Any:
        ping = getattr(self.conn, 'ping', None)
        if ping is not None:   # pymysql reopens a lost connection in place
            with contextlib.suppress(Exception):
                ping()
        return self.conn


def _batch_of(runnable: list[_Claim]) -> list[_Claim]:
    """The claims to run together. A task tried before may be one that kills its worker: it runs
    alone, so it cannot cost other tasks their attempts (its batch-mates lose at most the one
    attempt of the batch in which it first crashed)."""
    if not runnable or runnable[0].attempt > 1:
        return runnable[:1]
    return [claim for claim in runnable if claim.attempt == 1]


class _Watch:
    """A task running with a timeout, as the watchdog sees it."""
    __slots__ = ('claim', 'claimed', 'timeout', 'conn', 'connection_id', 'thread', 'started', 'deadline',
                 'timed_out', 'give_up_at', 'given_up', 'ended', 'cancel')

    def __init__(self, claim: _Claim, claimed: list[_Claim], timeout: float, conn: Any, connection_id: Any):
        self.claim, self.claimed, self.timeout = claim, claimed, timeout   # the task, and its batch
        self.conn, self.connection_id = conn, connection_id               # its transaction's connection, session
        self.thread = threading.current_thread()
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.timed_out = False            # set (under the watchdog's lock) once past the deadline...
        self.give_up_at = math.inf        # ...when the worker gives up waiting for it to return...
        self.given_up = False             # ...and once it has
        self.ended: threading.Event | None = None   # once timed out: its session is gone, or could not be ended
        self.cancel: Callable[[], Any] | None = None   # an async task: cancels it (from any thread)


class _Watchdog:
    """Times out a worker's tasks: a thread of its own, started by the first task with a timeout
    and ending WATCHDOG_IDLE seconds after the last. It wakes at the nearest deadline only: a task
    costs it a lock and a set operation at its start and at its end."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.changed = threading.Condition()
        self.watches: set[_Watch] = set()
        self.wake_at = math.inf
        self.running = False

    def watch(self, watch: _Watch) -> None:
        with self.changed:
            if not self.running:   # (if it cannot start, the task does not run either)
                threading.Thread(target=self._run, name='mqueue-watchdog', daemon=True).start()
                self.running = True
            self.watches.add(watch)
            if watch.deadline < self.wake_at:
                self.changed.notify()

    def forget(self, watch: _Watch) -> bool:
        """The task returned: whether it had been timed out (its thread must then not go on with
        its batch)."""
        with self.changed:
            self.watches.discard(watch)
            return watch.timed_out

    def grant_grace(self, watch: _Watch) -> None:
        """Its session has been ended: TIMEOUT_GRACE seconds from now for the task to return."""
        with self.changed:
            watch.give_up_at = time.monotonic() + TIMEOUT_GRACE
            self.changed.notify()

    def _run(self) -> None:
        idle_since = time.monotonic()
        with self.changed:
            try:
                while self.watches or time.monotonic() - idle_since < WATCHDOG_IDLE:
                    now = time.monotonic()
                    for watch in list(self.watches):
                        try:
                            self._look_at(watch, now)
                        except Exception:   # (a thread that would not start, a log handler that failed)
                            logger.exception('timing out %s failed', _attempt(watch.claim.context(None, self.worker)))
                            self.watches.discard(watch)
                            if watch.ended:
                                watch.ended.set()
                    if self.watches:
                        idle_since = now
                    self.wake_at = min((w.give_up_at if w.timed_out else w.deadline for w in self.watches),
                                       default=idle_since + WATCHDOG_IDLE)
                    self.changed.wait(min(WATCHDOG_IDLE, max(0.0, self.wake_at - now)))
            finally:   # (if this thread fails, the next task with a timeout starts another)
                self.running = False

    def _look_at(self, watch: _Watch, now: float) -> None:
        if not watch.timed_out and now >= watch.deadline:
            # Given up TIMEOUT_GRACE after its session is gone (grant_grace), or after this bound if
            # ending it takes that long (SQLite has none to end).
            watch.timed_out, watch.ended = True, threading.Event()
            watch.give_up_at = now + TIMEOUT_GRACE * (4 if self.worker.dialect.kill else 1)
            self.worker._timed_out(watch)
        elif watch.timed_out and now >= watch.give_up_at:
            self.watches.discard(watch)
            self.worker._give_up(watch)


def _process_alive(worker: str | None) -> bool | None:
    """Whether the process that wrote this worker id (host:pid:thread) still runs: False if it is
    a process of this host that does not exist, or a zombie (ended, its exit not yet collected);
    None if it cannot be told (another host, no id, not POSIX); True otherwise (a process of
    another user too)."""
    host, _, rest = (worker or '').partition(':')
    pid = rest.partition(':')[0]
    if host != _HOST or not pid.isdigit() or os.name != 'posix':   # (Windows' os.kill(pid, 0) would signal it)
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OverflowError:   # no such pid could exist: a value written by hand
        return None
    except OSError:
        return True
    try:
        with open(f'/proc/{pid}/stat') as stat:   # Linux: its state, after the name in parentheses
            return stat.read().rpartition(')')[2].split()[0] != 'Z'
    except (OSError, IndexError):
        return True


def _await_notification(conn: Any, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a NOTIFY on a listening PostgreSQL connection; whether
    one came. Those received meanwhile are dropped: the probe that follows looks at the table."""
    notifies = conn.notifies
    if callable(notifies):                  # psycopg 3: yields those already received first
        came = any(True for _ in notifies(timeout=timeout, stop_after=1))
        for _ in notifies(timeout=0):       # drain: one probe answers them all
            pass
        return came
    if not notifies:                        # psycopg2: a list that poll() fills
        select.select([conn], [], [], timeout)
        conn.poll()
    came = bool(notifies)
    notifies.clear()
    return came


# Helpers #########################################################################################


def backoff(base: float, attempt: int) -> float:
    """Seconds before retrying after failed attempt number ``attempt`` (1, 2, ...): base doubled
    for each earlier retry, capped at MAX_BACKOFF, then jittered down by up to half. Always within
    [d/2, d] where d = min(MAX_BACKOFF, base * 2 ** (attempt - 1))."""
    ceiling = min(MAX_BACKOFF, base * 2.0 ** min(attempt - 1, 64))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def _jittered(seconds: float) -> float:
    return seconds * random.uniform(0.9, 1.1)


def _utc(value: dt.datetime | str) -> dt.datetime:
    """A naive UTC datetime from the database (SQLite's is text), made aware."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc)


def _import_tree(package: str) -> None:
    """Import a package and all its submodules, so every task in it registers."""
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(module, '__path__', []), prefix=package + '.'):
        importlib.import_module(info.name)


# CLI #############################################################################################


def main(argv: Sequence[str] | None = None, *,
         database: tuple[Registry, Callable[[], Any]] | None = None) -> int:
    """The ``mqueue`` command. Returns the exit status: 0 ok, 1 an error (one line on stderr),
    2 bad usage; a worker abandoned by a second signal returns 128 + the signal's number.

    ``database``: the registry and connection factory the commands use instead of ``--db``,
    ``--table`` and ``--cron-table`` (how ``manage.py mqueue`` runs them on Django's database)."""
    parser, subparsers = _parser(own_database=database is None)
    args = parser.parse_args(argv)
    args.database = database
    if hasattr(args, 'dbs'):   # (not where main()'s database is given, nor for schema)
        args.dbs = args.dbs or [os.environ.get('MQUEUE_DATABASE_URL') or DEFAULT_DATABASE_URL]
        args.db = args.dbs[0]
        if len(args.dbs) > 1 and args.command not in _ON_EACH_DATABASE:
            subparsers[args.command].error(f'{args.command} works on one database: give one --db')
        if len(args.dbs) > 1 and getattr(args, 'ids', None):
            subparsers[args.command].error('task ids are numbered per database: give one --db with ids')
    if args.command == 'retry' and not (args.ids or args.queue or args.name or args.all):
        subparsers['retry'].error('give task ids, --queue and/or --name, or --all')
    if args.command == 'purge' and (args.older_than is None) == (not args.results):
        subparsers['purge'].error('give --older-than AGE (dead tasks) or --results (expired results)')
    if args.command == 'purge' and args.results and (args.queue or args.name):
        subparsers['purge'].error('--queue and --name choose dead tasks; --results deletes every expired result')
    try:
        if len(getattr(args, 'dbs', ())) > 1 and args.command != 'worker':
            return _on_each_database(args)
        return _COMMANDS[args.command](args)
    except _ColdShutdown as exc:
        return 128 + exc.args[0]
    except Exception as exc:
        _fail(args, _failure(exc))
        return 1


def _failure(exc: Exception) -> str:
    """What a command that failed says, in one line; a bug (not a situation) is raised again."""
    database = _database_error(exc)
    if not database and not isinstance(exc, (MQueueError, ValueError, ImportError)):
        raise exc   # keep its traceback
    return _schema_problem(exc) or (_describe_error(exc, short=True) if database else str(exc))


# The commands an operator may run on several databases at once (repeated --db): each runs on
# every database in turn, under a heading naming it (with --json: one list, an entry each), and
# one database that fails does not stop the others. Task ids are numbered per database, so a
# command given ids takes one --db.
_ON_EACH_DATABASE = ('worker', 'status', 'dead', 'retry', 'purge', 'crons', 'init-db')


def _on_each_database(args: argparse.Namespace) -> int:
    status, entries = 0, []
    json_output = getattr(args, 'json', False)
    for url in args.dbs:
        one = argparse.Namespace(**{**vars(args), 'db': url, 'collected': [] if json_output else None})
        try:
            name = connect_url(url).description
        except ValueError:   # (the command says what is wrong with it, below)
            name = _passwords_hidden(args, url)
        if not json_output:
            print(f'== {name} ==' if url == args.dbs[0] else f'\n== {name} ==', flush=True)
        try:
            status = max(status, _COMMANDS[args.command](one))
            entries.append({'database': name, 'result': one.collected[0] if one.collected else None})
        except Exception as exc:
            message = _failure(exc)
            _fail(one, message)
            entries.append({'database': name, 'error': message})
            status = 1
    if json_output:
        _print_json(args, entries)
    return status


def _parser(own_database: bool = True) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command line; without ``own_database`` (main()'s ``database`` given) the commands take
    no --db, --table and --cron-table, and need no --tasks: the program running them has both."""
    parser = argparse.ArgumentParser(
        prog='mqueue', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='A task queue in your own database (MySQL/MariaDB, PostgreSQL or SQLite).',
        epilog='Every command takes --db URL (default $MQUEUE_DATABASE_URL, else '
               f'{DEFAULT_DATABASE_URL}); `mqueue COMMAND --help` shows its options and an example.\n'
               'Exit status: 0 ok, 1 an error (one line on stderr), 2 bad usage.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    subparsers = {}

    def command(name: str, summary: str, examples: str, database: bool = True,
                output: bool = True) -> argparse.ArgumentParser:
        sub = subparsers[name] = commands.add_parser(
            name, help=summary, description=summary + '.', epilog='examples:\n' + examples,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        if database and own_database:
            several = name in _ON_EACH_DATABASE
            sub.add_argument('--db', metavar='URL', action='append', dest='dbs',
                             help='database URL: sqlite:///path.db, postgresql://user:password@host/db or '
                                  'mysql://user:password@host/db (default: $MQUEUE_DATABASE_URL, else '
                                  f'{DEFAULT_DATABASE_URL}, whose tables are created if missing)'
                                  + ('; repeat it for several databases' if several else ''))
        if own_database:
            sub.add_argument('--table', metavar='NAME', default=DEFAULT_TABLE, help='task table name (default task)')
            sub.add_argument('--cron-table', metavar='NAME', default=DEFAULT_CRON_TABLE,
                             help='cron table name (default cron)')
        if database and output:
            sub.add_argument('--json', action='store_true', help='print JSON instead of a table (for scripts)')
        return sub

    def tasks(sub: argparse.ArgumentParser, required: bool = True, why: str = '') -> None:
        sub.add_argument('--tasks', metavar='PACKAGE', action='append', required=required and own_database,
                         help='package whose modules define the tasks (repeatable; the current directory is '
                              'on the import path)' + why)

    worker = command('worker', 'Run a worker until SIGTERM/SIGINT (with --burst: until no due task is left)',
                     '  mqueue worker --db mysql://app:secret@127.0.0.1/app --tasks myapp.tasks --concurrency 4\n'
                     '  MQUEUE_DATABASE_URL=postgresql://app@db/app mqueue worker --tasks tasks --queue mail --burst',
                     output=False)
    tasks(worker)
    worker.add_argument('--queue', metavar='Q', action='append', dest='queues', type=_queue_arg,
                        help='queue to serve (repeatable; default: the default queue and every task\'s queue)')
    worker.add_argument('--concurrency', metavar='N', type=int, default=1, help='worker threads (default 1)')
    worker.add_argument('--burst', action='store_true', help='exit once no due task is left')
    worker.add_argument('--timeout', metavar='AGE', type=_duration,
                        help='how long an attempt of a task without a timeout of its own may run (like --older-than '
                             'of purge: 90, 15m, 1h...); default none. A task that never returns stops the worker, '
                             'which exits with status 1 for its supervisor to restart it')
    worker.add_argument('--no-crons', action='store_true', help="don't schedule crons in this worker")
    worker.add_argument('--no-rescue', action='store_true',
                        help="leave a dead worker's tasks to their lease (60 s) instead of rescuing them within "
                             "seconds (on a Galera cluster's node this is so without it)")
    worker.add_argument('--log-level', choices=['DEBUG', 'INFO', 'WARNING', 'ERROR'], default='INFO',
                        help='INFO (default): start, stop, connections and one line per task; WARNING: failures only')
    worker.add_argument('-v', '--verbose', action='store_const', const='INFO', dest='log_level',
                        help=argparse.SUPPRESS)   # before 0.2 the default was WARNING, and -v meant INFO

    web = command('web', 'Serve the dashboard: queues, dead tasks (retry, delete), scheduled tasks (run now), '
                  'running tasks and crons, in a browser (docs/dashboard.md)',
                  '  mqueue web --db mysql://app:secret@127.0.0.1/app --tasks myapp.tasks\n'
                  '  MQUEUE_WEB_PASSWORD=... mqueue web --bind 0.0.0.0:8080 --read-only',
                  output=False)
    tasks(web, required=False, why='; with it, crons show their schedule and can be run now')
    web.add_argument('--bind', metavar='HOST:PORT', default='127.0.0.1:8080', type=_bind_arg,
                     help='where to listen (default 127.0.0.1:8080); any other than loopback needs '
                          '$MQUEUE_WEB_PASSWORD (HTTP Basic, user $MQUEUE_WEB_USER, default mqueue) or '
                          '$MQUEUE_WEB_TOKEN (Authorization: Bearer)')
    web.add_argument('--read-only', action='store_true', help='show, never change: no retry, delete, run now')
    web.add_argument('--redact', metavar='KEYS', help='comma-separated argument keys shown as *** (default: '
                                                      'password, secret, token and the like)')
    status = command('status', 'Show each queue: tasks ready, scheduled for later (or waiting to retry), '
                     'running, dead, and how long the oldest ready task has waited; then the running tasks '
                     'past their timeout',
                     '  mqueue status --db mysql://app:secret@127.0.0.1/app\n'
                     '  mqueue status --queue mail --json')
    status.add_argument('--queue', metavar='Q', type=_queue_arg, help='only this queue')

    dead = command('dead', 'List dead tasks, most recently dead first, with their last error',
                   '  mqueue dead --queue mail --limit 5\n'
                   '  mqueue dead --name tasks.mail.send --full     # with arguments and traceback')
    dead.add_argument('--queue', metavar='Q', type=_queue_arg, help='only this queue')
    dead.add_argument('--name', metavar='TASK', type=_name_arg, help='only this task name')
    dead.add_argument('--limit', metavar='N', type=_positive_int, default=20, help='at most N tasks (default 20)')
    dead.add_argument('--full', action='store_true', help='print each task with its arguments and whole traceback')

    result = command('result', "What became of a task: pending, running, succeeded (with the value it returned, if "
                     'it keeps its result), dead (with its errors) or unknown',
                     '  mqueue result 17\n  mqueue result 17 --json')
    result.add_argument('id', metavar='ID', type=_positive_int, help='the task id')

    retry = command('retry', 'Bring dead tasks back: due now, with a fresh count of attempts',
                    '  mqueue retry 41 42\n'
                    '  mqueue retry --queue mail --name tasks.mail.send\n'
                    '  mqueue retry --all')
    retry.add_argument('ids', metavar='ID', nargs='*', type=_positive_int, help='dead task ids')
    retry.add_argument('--queue', metavar='Q', type=_queue_arg, help='only dead tasks of this queue')
    retry.add_argument('--name', metavar='TASK', type=_name_arg, help='only dead tasks of this name')
    retry.add_argument('--all', action='store_true', help='every dead task')

    cancel = command('cancel', 'Delete tasks that no worker is running (pending, scheduled or dead) so they never '
                     'run; a running task cannot be cancelled', '  mqueue cancel 17 18')
    cancel.add_argument('ids', metavar='ID', nargs='+', type=_positive_int, help='task ids')

    purge = command('purge', 'Delete dead tasks that died more than a given time ago (dead tasks are kept '
                    'until purged), or expired results', '  mqueue purge --older-than 30d\n'
                    '  mqueue purge --older-than 0 --queue mail     # every dead task of queue mail\n'
                    '  mqueue purge --results                       # every expired result')
    purge.add_argument('--older-than', metavar='AGE', type=_duration,
                       help='seconds, or a number with s, m, h, d or w: 90s, 15m, 12h, 30d, 2w; 0 for all')
    purge.add_argument('--results', action='store_true', help='delete the expired results (workers delete '
                       f'{RESULTS_PURGE_MAX} every {RESULTS_PURGE_EVERY:g} s too)')
    purge.add_argument('--queue', metavar='Q', type=_queue_arg, help='only this queue')
    purge.add_argument('--name', metavar='TASK', type=_name_arg, help='only this task name')

    enqueue = command('enqueue', 'Enqueue a task by name and commit it',
                      '  mqueue enqueue tasks.mail.send --args \'["ann@example.com", "Hello"]\'\n'
                      '  mqueue enqueue tasks.report --args \'{"day": "2026-11-30"}\' --delay 1h --queue reports\n'
                      '  mqueue enqueue tasks.mail.send --tasks tasks --args \'["ann@example.com", "Hi"]\'')
    enqueue.add_argument('name', metavar='NAME', type=_name_arg, help='the registered task name, e.g. tasks.mail.send')
    enqueue.add_argument('--args', metavar='JSON', type=_json_call, default=[],
                         help='a JSON list (positional arguments) or object (keyword arguments); default []')
    enqueue.add_argument('--delay', metavar='AGE', type=_duration, help='due after this long (like --older-than '
                         'of purge: 90, 15m, 1h...); default now')
    enqueue.add_argument('--unique', metavar='KEY', type=_unique_arg,
                         help='a unique key: if a task holds it (pending, running, retrying), nothing is enqueued '
                              'and that task is named')
    enqueue.add_argument('--queue', metavar='Q', type=_queue_arg, help="default: the task's queue with --tasks, else default")
    enqueue.add_argument('--priority', metavar='P', type=_priority_arg, help='smaller runs first (default the task\'s, else 0)')
    tasks(enqueue, required=False, why='; with it, NAME must be one of their tasks and the arguments must fit it')

    crons = command('crons', 'List the declared crons with their expression, zone, last and next fire',
                    '  mqueue crons --db mysql://app:secret@127.0.0.1/app --tasks myapp.tasks')
    tasks(crons)
    command('init-db', 'Create the task and cron tables if they are missing',
            '  mqueue init-db --db postgresql://app:secret@127.0.0.1/app', output=False)
    schema = command('schema', 'Print the CREATE TABLE statements', '  mqueue schema --dialect postgresql | psql app',
                     database=False)
    schema.add_argument('--dialect', choices=list(DIALECTS), default='mysql', help='the database (default mysql)')
    return parser, subparsers


def _run_worker(args: argparse.Namespace) -> int:
    # Importing the tasks (an app's whole import tree) takes time, and a deploy may stop the worker
    # meanwhile: until Worker.run() installs its own handlers, SIGTERM/SIGINT end it here, cleanly.
    def stop_starting(signum: int, frame: Any) -> None:
        raise _StoppedStarting(signum)
    previous = ({sig: signal.signal(sig, stop_starting) for sig in (signal.SIGTERM, signal.SIGINT)}
                if threading.current_thread() is threading.main_thread() else {})
    try:
        registry, connect = _open_database(args, tasks=True)
        if len(getattr(args, 'dbs', ())) > 1:   # one worker serving them all, in rotation
            connect = [connect, *(_connect_to(args, registry, url) for url in args.dbs[1:])]
        logging.basicConfig(level=getattr(logging, args.log_level),
                            format='%(asctime)s %(levelname)s %(name)s: %(message)s')
        Worker(connect, args.queues, registry=registry, concurrency=args.concurrency, crons=not args.no_crons,
               rescue_after=None if args.no_rescue else DEFAULT_RESCUE_AFTER,
               timeout=args.timeout or None).run(burst=args.burst)
    except _StoppedStarting as stopped:
        logger.warning('%s while the worker was starting: stopped before it ran any task',
                       signal.Signals(stopped.args[0]).name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _show_status(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args)
    with _transaction(connect) as conn:
        stats = registry.queue_stats(conn, args.queue)
        overdue = registry.past_timeout(conn, args.queue)
    if args.json:   # (each queue with its tasks past their timeout)
        _print_json(args, [{**row._asdict(), 'past_timeout': [task._asdict() for task in overdue if task.queue == row.queue]}
                     for row in stats])
    elif not stats:
        print(f'no tasks{f" in queue {args.queue}" if args.queue else ""} ({registry.table} in {connect.description})')
    else:
        _print_table(('QUEUE', 'READY', 'SCHEDULED', 'RUNNING', 'DEAD', 'OLDEST READY'),
                     [(*row[:5], _age(row.latency) if row.ready else '-') for row in stats])
    if overdue and not args.json:
        print(f'\n{_count(len(overdue), "running task")} past the timeout (their workers hang, are paused, or died '
              'and a rescue will bring the task back):')
        _print_table(('ID', 'QUEUE', 'NAME', 'WORKER', 'CLAIMED (UTC)', 'PAST TIMEOUT BY'),
                     [(task.id, task.queue, task.name, task.worker or '-', f'{task.claimed_at:%Y-%m-%d %H:%M:%S}',
                       _age(task.overdue)) for task in overdue])
    return 0


def _show_dead(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args)
    with _transaction(connect) as conn:
        dead = registry.dead_tasks(conn, queue=args.queue, name=args.name, limit=args.limit)
    if args.json:
        _print_json(args, [row._asdict() for row in dead])
    elif not dead:
        print('no dead tasks')
    elif args.full:
        for row in dead:
            print(f'task {row.id} {row.name} (queue {row.queue}), {row.attempts} attempts, dead since '
                  f'{row.dead_at:%Y-%m-%d %H:%M:%S} UTC\n  args: {row.args}\n  ' + row.error.rstrip().replace('\n', '\n  '))
    else:
        _print_table(('ID', 'QUEUE', 'NAME', 'ATTEMPTS', 'DEAD SINCE (UTC)', 'LAST ERROR'),
                     [(row.id, row.queue, row.name, row.attempts, f'{row.dead_at:%Y-%m-%d %H:%M:%S}',
                       _first_line(row.error, 100)) for row in dead])
    return 0


def _retry(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args)
    with _transaction(connect) as conn:
        count = registry.retry_dead(conn, args.ids or None, queue=args.queue, name=args.name)
    _print_json(args, {'retried': count}) if args.json else print(f'{_count(count, "dead task")} brought back')
    return 0


def _cancel(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args)
    cancelled, refused = [], {}
    with _transaction(connect) as conn:
        for task_id in dict.fromkeys(args.ids):
            if registry.cancel(conn, task_id):
                cancelled.append(task_id)
            else:
                refused[task_id] = ('a worker is running it' if registry.exists(conn, task_id)
                                    else 'no such task (finished, or never enqueued)')
    if args.json:
        _print_json(args, {'cancelled': cancelled, 'not_cancelled': [{'id': i, 'reason': r} for i, r in refused.items()]})
    elif cancelled:
        print(f'cancelled {", ".join(map(str, cancelled))}')
    if refused:
        _fail(args, 'not cancelled: ' + '; '.join(f'task {task_id}: {reason}' for task_id, reason in refused.items()))
    return 1 if refused else 0


def _purge(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args)
    with _transaction(connect) as conn:
        if args.results:
            count, noun = registry.purge_results(conn), 'expired result'
        else:
            count, noun = registry.purge_dead(conn, args.older_than, queue=args.queue, name=args.name), 'dead task'
    _print_json(args, {'purged': count}) if args.json else print(f'{_count(count, noun)} purged')
    return 0


def _show_result(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args)
    with _transaction(connect) as conn:
        found = registry.result(conn, args.id)
    if args.json:
        _print_json(args, {**found._asdict(), 'error': found.error})
        return 0
    times = ', '.join(f'{label} {when:%Y-%m-%d %H:%M:%S} UTC' for label, when in (
        ('enqueued', found.enqueued_at), ('started', found.started_at), ('finished', found.finished_at)) if when)
    print(f'task {found.id}' + (f' {found.name}' if found.name else '') + f': {found.status}' + (f', {_count(found.attempts, "attempt")}' if found.attempts else '')
          + (f'; {times}' if times else ''))
    if found.status == 'succeeded':
        print(f'  value: {json.dumps(found.value)}')
    if found.error:
        print('  last error: ' + found.error.rstrip().replace('\n', '\n  '))
    return 0


def _enqueue(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args, tasks=bool(args.tasks))
    if args.tasks:
        task = registry.tasks.get(args.name)
        if task is None:
            raise MQueueError(f'no task named {args.name!r} in {", ".join(args.tasks)}; it has '
                              f'{", ".join(sorted(registry.tasks)) or "none"}')
        problem = task.check_call(args.args)
        if problem:
            raise MQueueError(f'{args.name}() cannot take these arguments: {problem}')
    queue = registry.placement(args.name, args.queue, args.priority)[0]
    with _transaction(connect) as conn:
        task_id = registry.enqueue(conn, args.name, args.args, queue=queue, delay=args.delay, priority=args.priority,
                                   unique=args.unique)
    created = getattr(task_id, 'created', True)
    if args.json:
        _print_json(args, {'id': int(task_id), 'name': args.name, 'queue': queue, 'created': created})
    elif created:
        print(f'enqueued task {task_id} {args.name} (queue {queue})')
    else:
        print(f'task {task_id} holds unique key {args.unique!r}: nothing enqueued' if args.unique else
              f'task {task_id} holds the unique key of this call: nothing enqueued')
    return 0


def _list_crons(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args, tasks=True)
    rows = _CronScheduler(registry, None, functools.partial(_transaction, connect)).listing()
    if args.json:
        _print_json(args, rows)
    else:
        _print_table(('NAME', 'QUEUE', 'EXPRESSION', 'ZONE', 'LAST FIRE (UTC)', 'NEXT FIRE (UTC)'),
                     [(row['name'], row['queue'], row['expression'] or '(not declared)', row['zone'] or '',
                       f'{row["last"]:%Y-%m-%d %H:%M:%S}' if row['last'] else 'never',
                       f'{row["next"]:%Y-%m-%d %H:%M:%S}' if row['next'] else '') for row in rows])
    return 0


def _init_db(args: argparse.Namespace) -> int:
    registry, connect = _open_database(args)
    print(f'mqueue: tables {registry.table}, {registry.cron_table} and {registry.result_table} are ready in '
          f'{connect.description}')
    return 0


def _print_schema(args: argparse.Namespace) -> int:
    print(Registry(table=args.table, cron_table=args.cron_table).schema(args.dialect), end='')
    return 0


def _run_web(args: argparse.Namespace) -> int:
    try:
        import mqueue_web
    except ImportError:
        raise MQueueError('the dashboard is mqueue_web.py: put it beside mqueue.py (pip install mqueue has it)') from None
    registry, connect = _open_database(args, tasks=bool(args.tasks))
    host, _, port = args.bind.rpartition(':')
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    redact = mqueue_web.DEFAULT_REDACT if args.redact is None else [key for key in args.redact.split(',') if key]
    dashboard = mqueue_web.Dashboard(connect, registry, read_only=args.read_only, redact=redact,
                                     user=os.environ.get('MQUEUE_WEB_USER') or 'mqueue',
                                     password=os.environ.get('MQUEUE_WEB_PASSWORD') or None,
                                     token=os.environ.get('MQUEUE_WEB_TOKEN') or None)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))   # (systemd's stop: a clean exit)
    try:
        mqueue_web.serve(dashboard, host.strip('[]') or '127.0.0.1', int(port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:   # (the address is taken, or not this machine's)
        raise MQueueError(f'cannot listen on {args.bind}: {exc.strerror or exc}') from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


_COMMANDS = {'worker': _run_worker, 'web': _run_web, 'status': _show_status, 'dead': _show_dead, 'retry': _retry, 'cancel': _cancel,
             'purge': _purge, 'result': _show_result, 'enqueue': _enqueue, 'crons': _list_crons, 'init-db': _init_db,
             'schema': _print_schema}


def _open_database(args: argparse.Namespace, tasks: bool = False) -> tuple[Registry, Callable[[], Any]]:
    """The command's registry (the default one, with its tasks imported, where tasks matter) and
    connect callable; on SQLite, and for init-db, the tables are created if missing. (Where the
    program running the command gave both, main()'s ``database``, they are those.)"""
    given = args.database is not None
    if given:
        registry, connect = args.database
        if args.command == 'init-db':
            with _transaction(connect) as conn:
                registry.create_tables(conn)
    else:
        registry = default_registry if tasks else Registry()
        registry.init(table=args.table, cron_table=args.cron_table)
        connect = _connect_to(args, registry, args.db)
    if tasks and not given:
        sys.path.insert(0, os.getcwd())   # `--tasks tasks` finds ./tasks, as `python -m` would
        for package in args.tasks:
            _import_tree(package)
    return registry, connect


def _connect_to(args: argparse.Namespace, registry: Registry, url: str) -> Callable[[], Any]:
    """A --db URL's connect callable, its tables created first on SQLite and for init-db."""
    connect = connect_url(url)
    if args.command == 'init-db' or url.startswith('sqlite:'):
        with _transaction(connect) as conn:
            registry.create_tables(conn)
    return connect


@contextlib.contextmanager
def _transaction(connect: Callable[[], Any]) -> Iterator[Any]:
    """A new connection's transaction: committed if the block succeeds, else rolled back."""
    try:
        conn = connect()
    except Exception as exc:
        if not _database_error(exc):
            raise
        raise MQueueError(f'cannot connect to {connect.description}: {_describe_error(exc, short=True)}') from exc
    try:
        yield conn
        conn.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.rollback()
        raise
    finally:
        conn.close()


def _print_table(header: Sequence[str], rows: list[Sequence]) -> None:
    """Aligned columns; numbers to the right."""
    numeric = [bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(header))]
    cells = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print('  '.join(cell.rjust(width) if right else cell.ljust(width)
                        for cell, width, right in zip(row, widths, numeric)).rstrip())


def _print_json(args: argparse.Namespace, value: Any) -> None:
    """Print a command's JSON, or keep it for _on_each_database to print with the others'."""
    if getattr(args, 'collected', None) is not None:
        args.collected.append(value)
        return
    print(json.dumps(value, indent=2, default=lambda v: v.isoformat() if isinstance(v, dt.datetime) else str(v)))


def _fail(args: argparse.Namespace, message: str) -> None:
    """An error as one line on stderr, never with the URL's password (drivers leave it out of
    their messages; make sure)."""
    print(f'mqueue: {" ".join(_passwords_hidden(args, message).split())}', file=sys.stderr)


def _passwords_hidden(args: argparse.Namespace, text: str) -> str:
    for url in getattr(args, 'dbs', None) or [getattr(args, 'db', None)]:
        for secret in _passwords_in(url):
            text = text.replace(secret, '***')
    return text


def _passwords_in(url: str | None) -> list[str]:
    """A URL's password as typed and as decoded, read without a parser that could fail on it."""
    userinfo = url.split('://', 1)[1].rpartition('@')[0] if url and '://' in url else ''
    typed = userinfo.split(':', 1)[1] if ':' in userinfo else ''
    return [secret for secret in {typed, unquote(typed)} if secret]


def _count(n: int, noun: str) -> str:
    return f'{n} {noun}{"" if n == 1 else "s"}'


def _first_line(text: str, width: int) -> str:
    line = text.strip().split('\n', 1)[0]
    return line if len(line) <= width else line[:width - 3] + '...'


def _age(seconds: float) -> str:
    """A duration for people: 4.2s, 3m05s, 2h03m, 4d02h."""
    if seconds < 60:
        return f'{seconds:.1f}s'
    minutes, hours = int(seconds // 60), int(seconds // 3600)
    if hours < 1:
        return f'{minutes}m{int(seconds % 60):02d}s'
    if hours < 24:
        return f'{hours}h{minutes % 60:02d}m'
    return f'{hours // 24}d{hours % 24:02d}h'


def _duration(text: str) -> float:
    """Seconds from '90', '90s', '15m', '12h', '30d' or '2w' (an argparse type)."""
    match = re.fullmatch(r'\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*', text)
    if not match:
        raise argparse.ArgumentTypeError(f'{text!r} is not a duration: seconds, or a number with s, m, h, d or w')
    return float(match.group(1)) * {'': 1, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}[match.group(2)]


def _json_call(text: str) -> list | dict:
    """Task arguments as JSON: a list or an object (an argparse type)."""
    try:
        call = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'not valid JSON ({exc})') from None
    if not isinstance(call, (list, dict)):
        raise argparse.ArgumentTypeError(f'must be a JSON list (positional) or object (keyword), not {text!r}')
    return call


def _argument(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from one of the library's checks: its complaint is a usage error."""
    def convert(text: str) -> Any:
        try:
            return check(text)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


_name_arg = _argument(lambda text: _checked_text('name', text, NAME_MAX))
_queue_arg = _argument(lambda text: _checked_text('queue', text, QUEUE_MAX))
_priority_arg = _argument(lambda text: _whole_number('priority', int(text), *PRIORITY_RANGE))
_unique_arg = _argument(_checked_key)


@_argument
def _bind_arg(text: str) -> str:
    host, _, port = text.rpartition(':')
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:   # (0: any free port)
        raise ValueError(f'{text!r} is not HOST:PORT, e.g. 127.0.0.1:8080')
    return text


def _positive_int(text: str) -> int:
    """A task id or a limit (an argparse type): within a BIGINT, so no driver overflows on it."""
    if not text.isdigit() or not 0 < int(text) < 2 ** 63:
        raise argparse.ArgumentTypeError(f'{text!r} is not a whole number from 1')
    return int(text)


if __name__ == '__main__':
    # Run the imported module's main, not this __main__ copy's, so tasks that `import mqueue`
    # register where the worker looks.
    import mqueue
    sys.exit(mqueue.main())
