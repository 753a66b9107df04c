"""Two example tasks. They write through ``mqueue.current().connection``: the worker's transaction,
which also deletes the task's row, so a mail is recorded exactly when its task completes."""

import mqueue


def _record(recipient, subject):
    """Write one row to example_mail in the running task's transaction (never commit here)."""
    context = mqueue.current()
    p = context.worker.dialect.param   # the driver's placeholder: %s, or ? for sqlite3
    cursor = context.connection.cursor()
    cursor.execute(f'INSERT INTO example_mail (task_id, attempt, recipient, subject) VALUES ({p}, {p}, {p}, {p})',
                   (context.id, context.retries + 1, recipient, subject))
    cursor.close()


@mqueue.task(retries=2, backoff=0)   # 3 attempts; backoff=0 retries at once, so the demo is quick
def send(to, subject, body=''):
    """Send a mail. An address at flaky.example fails its first attempt; one at invalid.example
    fails every attempt. Either way, the row written before the failure is rolled back."""
    _record(to, subject)
    domain = to.rpartition('@')[2]
    if domain == 'invalid.example':
        raise ValueError(f'mailbox {to} does not exist')
    if domain == 'flaky.example' and mqueue.current().retries == 0:
        raise ConnectionError('SMTP server busy, try again later')


@mqueue.task
def welcome(to, name):
    """Record a welcome mail, and enqueue a follow-up in the same transaction as that write."""
    _record(to, f'Welcome, {name}')
    send.enqueue(to, 'Getting started')   # inside a task, enqueue uses the task's transaction
