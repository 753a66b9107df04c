"""Run mqueue end to end: python examples/demo.py

The database is $MQUEUE_DATABASE_URL, default sqlite:///mqueue-demo.db (a file in the current
folder: nothing but Python needed); or mysql://root@127.0.0.1:3306/test, postgresql://... Creates
mqueue's tables (task, cron) if missing and its own table example_mail; re-running starts from a
clean demo.
"""

import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]   # examples/tasks, and mqueue.py without installing it

import mqueue
import tasks.mail

QUEUE = 'mqueue-demo'
URL = os.environ.get('MQUEUE_DATABASE_URL', 'sqlite:///mqueue-demo.db')
KEY = {'mysql': 'BIGINT AUTO_INCREMENT PRIMARY KEY', 'postgresql': 'BIGSERIAL PRIMARY KEY', 'sqlite': 'INTEGER PRIMARY KEY'}


class FirstLine(logging.Formatter):
    """Show the worker's log one line per event (a failure's traceback stays in task.last_error)."""

    def format(self, record):
        return f'  worker log: {record.getMessage().splitlines()[0].rstrip(":")}'


def query(conn, sql, params=()):
    """Run SQL written with %s placeholders (sqlite3 wants ?)."""
    cursor = conn.cursor()
    cursor.execute(sql.replace('%s', mqueue.default_registry.dialect_of(conn).param), params)
    rows = cursor.fetchall() if cursor.description else []
    cursor.close()
    return rows


def main():
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(FirstLine())
    logging.getLogger('mqueue').addHandler(handler)
    logging.getLogger('mqueue').setLevel(logging.INFO)

    connect = mqueue.connect_url(URL)
    conn = connect()
    print(f'database: {connect.description}')

    # Tables: mqueue's (CREATE TABLE IF NOT EXISTS) and the example's; then clear a previous run.
    mqueue.Registry().create_tables(conn)   # the default names: task, cron
    query(conn, f'CREATE TABLE IF NOT EXISTS example_mail (id {KEY[mqueue.default_registry.dialect_of(conn).name]}, '
                'task_id BIGINT NOT NULL, attempt INT NOT NULL, recipient VARCHAR(255) NOT NULL, '
                'subject VARCHAR(255) NOT NULL)')
    query(conn, 'DELETE FROM example_mail')
    query(conn, 'DELETE FROM task WHERE queue = %s', (QUEUE,))
    query(conn, 'DELETE FROM cron WHERE queue = %s', (QUEUE,))
    conn.commit()

    # The seed-style API: a default queue, and the connection Task.enqueue uses outside a task.
    mqueue.init(QUEUE, connection=lambda: conn)

    # 1. Enqueue three tasks in one transaction and commit: they exist from the commit on.
    committed = [
        tasks.mail.welcome.enqueue('ann@example.com', 'Ann'),
        tasks.mail.send.enqueue('bob@flaky.example', 'Your invoice'),
        mqueue.enqueue(conn, 'tasks.mail.send', {'to': 'eve@invalid.example', 'subject': 'Hello'}),
    ]
    conn.commit()
    print(f'enqueued and committed: tasks {committed}')

    # 2. Enqueue one in a transaction that rolls back: that task never existed.
    ghost = tasks.mail.send.enqueue('ghost@example.com', 'Never sent')
    conn.rollback()
    print(f'enqueued and rolled back: task {ghost}')

    # 3. A worker runs every due task, then exits (burst). It uses its own connections.
    print('worker: run(burst=True)')
    processed = mqueue.Worker(connect, tasks='tasks').run(burst=True)
    print(f'worker: processed {processed} task runs')

    # 4. What the database holds now.
    conn.commit()   # end this connection's snapshot, to read what the worker committed
    print('example_mail (each row committed together with the deletion of its task):')
    for task_id, attempt, recipient, subject in query(
            conn, 'SELECT task_id, attempt, recipient, subject FROM example_mail ORDER BY id'):
        print(f'  task {task_id:>4} attempt {attempt}: {recipient:<20} {subject}')
    ghost_mails = query(conn, 'SELECT 1 FROM example_mail WHERE recipient = %s', ('ghost@example.com',))
    print(f'mails to ghost@example.com: {len(ghost_mails)} (its task was rolled back: it never existed)')
    eve_mails = query(conn, 'SELECT 1 FROM example_mail WHERE recipient = %s', ('eve@invalid.example',))
    print(f'mails to eve@invalid.example: {len(eve_mails)} (each failed attempt\'s write rolled back with it)')
    left = query(conn, 'SELECT id, name, retries, dead_at, last_error FROM task WHERE queue = %s '
                       'ORDER BY id', (QUEUE,))
    print(f'task rows left in queue {QUEUE!r}: {len(left)}')
    for task_id, name, attempts, dead, error in left:
        print(f'  task {task_id} {name}: {attempts} attempts, {"dead" if dead else "waiting"}, '
              f'last_error: {error.splitlines()[0]}')
    conn.close()


if __name__ == '__main__':
    main()
