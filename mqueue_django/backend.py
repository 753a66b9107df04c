"""mqueue as a backend of Django's Tasks framework (``django.tasks``, or the ``django_tasks``
backport before Django 6).

    TASKS = {
        'default': {
            'BACKEND': 'mqueue_django.backend.MQueueBackend',
            'QUEUES': ['default', 'mail'],
            'OPTIONS': {'RETRIES': 5, 'CRONS': {'shop.tasks.close_stale_carts': '*/10 * * * *'}},
        },
    }

``enqueue`` inserts the task's row through Django's own connection for OPTIONS['DATABASE'], so an
enclosing ``transaction.atomic()`` covers it. ``manage.py mqueue_worker`` runs each task inside a
``transaction.atomic()`` on that same connection, the one that deletes its row: a task's ORM
writes commit with its completion and roll back with its failure. docs/django.md has the guide.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib
import inspect
import logging
import pkgutil
import threading
from typing import Any, Callable, Iterator, Sequence

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

import mqueue

try:   # Django 6+
    from django.tasks import TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:   # the django-tasks backport, on older Django
    from django_tasks import TaskContext, TaskResult, TaskResultStatus
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskError as InvalidTask, TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

logger = logging.getLogger('mqueue')

# OPTIONS, with their defaults.
DEFAULT_OPTIONS = {
    'DATABASE': DEFAULT_DB_ALIAS,       # the Django database holding mqueue's tables; tasks run in its transactions
    'TABLE': 'mqueue_task',             # the task table (its results table: the name + _result)
    'CRON_TABLE': 'mqueue_cron',
    'RETRIES': mqueue.DEFAULT_RETRIES,  # retries after a failed attempt (then FAILED)
    'BACKOFF': mqueue.DEFAULT_BACKOFF,  # seconds before the first retry, doubled per retry
    'TIMEOUT': None,                    # seconds an attempt may run (docs/timeouts.md); None: no limit
    'RESULT_KEEP': mqueue.DEFAULT_RESULT_KEEP,   # seconds get_result() finds a finished task
    'MODULES': (),                      # modules holding tasks, besides each installed app's tasks module
    'CRONS': {},                        # task module path -> cron expression (croniter's syntax, UTC)
}

# mqueue's states of a task as Django's Tasks framework names them (an unknown task: none).
STATUSES = {'pending': TaskResultStatus.READY, 'running': TaskResultStatus.RUNNING,
            'succeeded': TaskResultStatus.SUCCESSFUL, 'dead': TaskResultStatus.FAILED}


class MQueueBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        unknown = set(self.options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ImproperlyConfigured(f'TASKS[{alias!r}]["OPTIONS"]: unknown {", ".join(sorted(unknown))}; '
                                       f'the options are {", ".join(DEFAULT_OPTIONS)}')
        options = {**DEFAULT_OPTIONS, **self.options}
        self.database = options['DATABASE']
        self.registry = mqueue.Registry(table=options['TABLE'], cron_table=options['CRON_TABLE'])
        self.retries, self.backoff = options['RETRIES'], options['BACKOFF']
        self.timeout, self.result_keep = options['TIMEOUT'], options['RESULT_KEEP']
        self.modules = list(options['MODULES'])
        self.crons = dict(options['CRONS'])
        self._tasks: dict[str, Task] = {}          # module path -> the Django task, as validate_task saw it
        self._discovered = False
        self._lock = threading.Lock()
        self._running: dict[int, TaskResult] = {}  # task id -> its attempt's TaskResult, until its end is reported
        self.connect = _Connect(self.database)

    # Enqueueing, in the caller's transaction

    def validate_task(self, task: Task) -> None:
        """Django's checks, and mqueue's limits on names; a valid task is known to this backend
        from then on (every Django task is validated when it is made: @task, .using())."""
        super().validate_task(task)
        if len(task.module_path) > mqueue.NAME_MAX:
            raise InvalidTask(f'{task.module_path}: a task name holds {mqueue.NAME_MAX} characters')
        if len(task.queue_name) > mqueue.QUEUE_MAX:
            raise InvalidTask(f'queue {task.queue_name!r}: a queue name holds {mqueue.QUEUE_MAX} characters')
        self._know(task)

    def enqueue(self, task: Task, args: Sequence, kwargs: dict) -> TaskResult:
        """Insert the task's row through Django's connection to OPTIONS['DATABASE'], in its
        current transaction (an atomic() block's; else it commits at once, as any statement
        in autocommit). Never commits or rolls back."""
        self.validate_task(task)
        try:   # (a call that cannot run is refused here, not found dead later)
            inspect.signature(task.func).bind(*((None,) if task.takes_context else ()), *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f'{task.module_path}() {exc}') from None
        run_after = task.run_after
        if run_after is not None and timezone.is_naive(run_after):   # (USE_TZ = False: Django's local time)
            run_after = timezone.make_aware(run_after)
        task_id = self.registry.enqueue(self._connection(), task.module_path,
                                        {'args': list(args), 'kwargs': dict(kwargs)}, queue=task.queue_name,
                                        eta=run_after, priority=-task.priority)
        result = TaskResult(task=task, id=str(task_id), status=TaskResultStatus.READY, enqueued_at=timezone.now(),
                            started_at=None, finished_at=None, last_attempted_at=None, args=list(args),
                            kwargs=dict(kwargs), backend=self.alias, errors=[], worker_ids=[])
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's state, read in the caller's transaction on Django's connection: READY
        (waiting, or waiting to retry after failed attempts, listed in ``errors``), RUNNING,
        SUCCESSFUL (with its return value) or FAILED (its retries used up). A finished task is
        found for OPTIONS['RESULT_KEEP'] seconds."""
        try:
            task_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        found = self.registry.result(self._connection(), task_id) if task_id > 0 else None
        if found is None or found.status == 'unknown':
            raise TaskResultDoesNotExist(result_id)
        task = self._task_named(found.name)
        if task is None:
            raise TaskResultDoesNotExist(f'{result_id}: its task {found.name} is not one of backend {self.alias!r}')
        call = found.args if found.status != 'succeeded' else found.value   # (the row, or what the task kept)
        call = call if isinstance(call, dict) else {}
        result = TaskResult(
            task=task, id=str(task_id), status=STATUSES[found.status], enqueued_at=found.enqueued_at,
            started_at=found.started_at, finished_at=found.finished_at,
            last_attempted_at=_last_attempted(found),
            args=call.get('args', []), kwargs=call.get('kwargs', {}), backend=self.alias,
            errors=[TaskError(exception_class_path=_exception_path(error['type']), traceback=error['error'])
                    for error in found.errors],
            worker_ids=[WORKER_UNKNOWN] * found.attempts)
        if found.status == 'succeeded':
            object.__setattr__(result, '_return_value', found.value.get('return_value'))
        return result

    def _connection(self) -> Any:
        """The DB-API connection under Django's connection to the database, in whatever
        transaction Django has it in."""
        wrapper = connections[self.database]
        wrapper.ensure_connection()
        return wrapper.connection

    # The tasks this backend knows: nothing is imported because a row names it

    def _know(self, task: Task) -> None:
        name = task.module_path
        with self._lock:
            known = self._tasks.get(name)
            if known is not None and known.func is task.func:
                return
            self._tasks[name] = task
            # (one assignment: a worker thread looking the name up never misses it; priority: a
            # cron's fires run at the task's)
            self.registry.tasks[name] = mqueue.Task(
                _runner(self, task), self.registry, name=name, queue=task.queue_name, retries=self.retries,
                backoff=self.backoff, priority=-task.priority, result=self.result_keep, timeout=self.timeout)

    def _task_named(self, name: str | None) -> Task | None:
        if name not in self._tasks:
            self.discover()
        return self._tasks.get(name)

    def discover(self) -> None:
        """Import each installed app's ``tasks`` module (a package: all its modules) and
        OPTIONS['MODULES'], so that their tasks are known; then set up OPTIONS['CRONS']. Once."""
        if self._discovered:
            return
        for config in apps.get_app_configs():
            _import_tasks(f'{config.name}.tasks', self, missing_ok=True)
        for module in self.modules:
            _import_tasks(module, self)
        for name, expression in self.crons.items():
            task = self._tasks.get(name)
            if task is None:
                raise ImproperlyConfigured(f'TASKS[{self.alias!r}]["OPTIONS"]["CRONS"]: no task {name} (known: '
                                           f'{", ".join(sorted(self._tasks)) or "none"})')
            if task.takes_context or inspect.signature(task.func).parameters:
                raise ImproperlyConfigured(f'CRONS: {name}() takes arguments; a cron task takes none')
            schedule = mqueue.Cron(expression)
            schedule.task = self.registry.tasks[name]
            self.registry.crons[name] = schedule
        self._discovered = True

    # The worker

    def worker(self, queues: Sequence[str] | None = None, **options: Any) -> mqueue.Worker:
        """An mqueue Worker for this backend's tasks, running each batch in a
        ``transaction.atomic()`` on Django's connection (``close_old_connections()`` before
        each, as a request does) and each task in a savepoint of its own. ``options``: as
        ``mqueue.Worker``'s (concurrency, batch, crons, timeout, ...). Queues: default QUEUES."""
        self.discover()
        hooks = {'transaction': self._transaction, 'around_task': self._around_task,
                 'task_succeeded': self._succeeded, 'task_failed': self._failed, 'task_dead': self._dead}
        return mqueue.Worker(None, list(queues or sorted(self.queues)) or None, registry=self.registry, hooks=hooks,
                             **options)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        close_old_connections()   # (a connection broken or past CONN_MAX_AGE is replaced)
        connection = connections[self.database]
        with transaction.atomic(using=self.database):
            yield connection.connection
            if connection.needs_rollback:   # (atomic() would roll back without a word: mqueue must know)
                raise TransactionManagementError('the transaction was marked for rollback')
            # The tasks' on_commit() callbacks run after the commit: one that raises cannot undo
            # it, so it is logged rather than taken for the commit's failure (which would run the
            # batch's tasks again).
            connection.run_on_commit = [(sids, _logged(func), robust) for sids, func, robust in connection.run_on_commit]

    @contextlib.contextmanager
    def _around_task(self, context: mqueue.TaskContext) -> Iterator[None]:
        # A savepoint Django knows of (inside mqueue's own): a failed task's on_commit()
        # callbacks are dropped with its writes.
        with transaction.atomic(using=self.database):
            yield
            if connections[self.database].needs_rollback:
                # The task caught a database error inside its atomic() block: Django would roll
                # its savepoint back without a word, and mqueue record the attempt as a success.
                raise TransactionManagementError(
                    "the task's transaction was marked for rollback (a database error it caught inside the atomic() "
                    'block, or set_rollback(True)): its writes are rolled back, so the attempt fails (catch database '
                    'errors around a nested atomic())')

    def _run(self, task: Task, args: list, kwargs: dict) -> dict:
        """One attempt, in the worker's transaction: what the task returned, with its call (for
        get_result(), whose TaskResult has both)."""
        context = mqueue.current()
        now = timezone.now()
        result = TaskResult(task=task, id=str(context.id), status=TaskResultStatus.RUNNING, enqueued_at=None,
                            started_at=now, finished_at=None, last_attempted_at=now, args=args, kwargs=kwargs,
                            backend=self.alias, errors=[],
                            worker_ids=[WORKER_UNKNOWN] * context.retries + [mqueue._worker_id()])
        self._running[context.id] = result
        task_started.send(type(self), task_result=result)
        if task.takes_context:   # (call() runs a coroutine function with async_to_sync, see docs/django.md)
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        object.__setattr__(result, '_return_value', value)
        return {'return_value': value, 'args': args, 'kwargs': kwargs}

    # Django's task_finished, once the attempt's end has committed: successful, or failed for good

    def _succeeded(self, context: mqueue.TaskContext, **info: Any) -> None:
        self._finished(context, TaskResultStatus.SUCCESSFUL)

    def _failed(self, context: mqueue.TaskContext, **info: Any) -> None:
        self._running.pop(context.id, None)   # (to be retried: not finished)

    def _dead(self, context: mqueue.TaskContext, error: str, exception: BaseException | None, **info: Any) -> None:
        kind = (f'{type(exception).__module__}.{type(exception).__qualname__}' if exception is not None
                else _exception_path(error.split(':', 1)[0]))
        self._finished(context, TaskResultStatus.FAILED, TaskError(exception_class_path=kind, traceback=error),
                       exception)

    def _finished(self, context: mqueue.TaskContext, status: TaskResultStatus, error: TaskError | None = None,
                  exception: BaseException | None = None) -> None:
        result = self._running.pop(context.id, None)
        if result is None:   # (a row that went dead unrun: unknown name or bad arguments; mqueue logged it)
            return
        object.__setattr__(result, 'status', status)
        object.__setattr__(result, 'finished_at', timezone.now())
        if error is not None:
            result.errors.append(error)
        if exception is None:
            task_finished.send(type(self), task_result=result)
            return
        try:   # Django sends a failure's task_finished in the except block: receivers read sys.exc_info()
            raise exception
        except BaseException:
            task_finished.send(type(self), task_result=result)


class _Connect:
    """backend.connect(): a new DB-API connection to the backend's database, out of autocommit
    (the caller commits and closes it), for the operating commands (``manage.py mqueue``)."""

    def __init__(self, database: str):
        self.database = database
        self.description = f'Django database {database!r}'   # (in mqueue's messages)

    def __call__(self) -> Any:
        wrapper = connections.create_connection(self.database)
        wrapper.ensure_connection()
        wrapper.set_autocommit(False)
        return wrapper.connection


def _logged(callback: Callable) -> Callable:
    """An on_commit() callback of a task, its exception logged (under mqueue's logger, which the
    worker shows) instead of raised out of the commit."""
    def run() -> None:
        try:
            callback()
        except Exception:
            logger.exception('an on_commit() callback of a task raised after its commit (%r); the commit stands',
                             callback)
    return run


WORKER_UNKNOWN = 'mqueue'   # worker_ids[i] of an earlier attempt: mqueue keeps the running attempt's worker only


def _runner(backend: MQueueBackend, task: Task) -> Callable:
    """The function mqueue runs for a Django task: rows hold {"args": [...], "kwargs": {...}}."""
    def run(args: Sequence = (), kwargs: dict | None = None) -> dict:
        return backend._run(task, list(args), dict(kwargs or {}))
    run.__name__ = run.__qualname__ = task.name
    return run


def _import_tasks(name: str, backend: MQueueBackend, missing_ok: bool = False) -> None:
    """Import a module (a package: its modules too) and know the tasks in it: those made before
    this backend was (their validate_task was another's), and those of other backends, which
    ``.using(backend=...)`` may send here."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if missing_ok and exc.name == name:
            return
        raise
    modules = [module]
    if hasattr(module, '__path__'):
        modules += [importlib.import_module(info.name)
                    for info in pkgutil.walk_packages(module.__path__, module.__name__ + '.')]
    for found in modules:
        for value in vars(found).values():
            if not isinstance(value, Task):
                continue
            if value.backend == backend.alias:
                backend._know(value)
                continue
            try:   # another backend's: adopted as this one's (validated here, which knows it), if it fits
                dataclasses.replace(value, backend=backend.alias)
            except (InvalidTask, ValueError) as exc:
                logger.debug('%s is not a task backend %r can run: %s', value.module_path, backend.alias, exc)


def _exception_path(kind: str) -> str:
    """A failure's type as TaskError.exception_class imports it: mqueue's own reasons, which are
    no classes (UnknownTask, BadArguments, a lost attempt), as mqueue.MQueueError."""
    return kind if '.' in kind else f'{mqueue.MQueueError.__module__}.{mqueue.MQueueError.__qualname__}'


def _last_attempted(found: mqueue.Result) -> dt.datetime | None:
    """mqueue keeps when the first attempt began and when each failed one ended: after failed
    attempts, the last failure's time stands for the last attempt's."""
    if found.errors and found.errors[-1].get('at'):
        return dt.datetime.fromisoformat(found.errors[-1]['at'])
    return found.started_at


def mqueue_backends() -> list[MQueueBackend]:
    """The TASKS backends that are mqueue's."""
    return [backend for backend in _task_backends().all() if isinstance(backend, MQueueBackend)]


def backend_named(alias: str = 'default') -> MQueueBackend:
    """TASKS[alias], which must be an mqueue backend (ImproperlyConfigured otherwise)."""
    try:
        backend = _task_backends()[alias]
    except Exception as exc:
        raise ImproperlyConfigured(f'no TASKS backend {alias!r}: {exc}') from None
    if not isinstance(backend, MQueueBackend):
        raise ImproperlyConfigured(f'TASKS[{alias!r}] is {type(backend).__module__}.{type(backend).__qualname__}, '
                                   'not mqueue_django.backend.MQueueBackend')
    return backend


def _task_backends() -> Any:
    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends
    return task_backends
