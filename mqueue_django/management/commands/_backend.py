"""The --backend option of the mqueue commands."""
from django.core.management.base import CommandError

from mqueue_django.backend import MQueueBackend


def add_backend_option(parser):
    parser.add_argument('--backend', default='default', metavar='ALIAS',
                        help="the TASKS backend (an mqueue_django one) whose tasks and tables to use (default 'default')")


def backend_named(alias: str) -> MQueueBackend:
    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends
    try:
        backend = task_backends[alias]
    except Exception as exc:
        raise CommandError(f'no TASKS backend {alias!r}: {exc}') from None
    if not isinstance(backend, MQueueBackend):
        raise CommandError(f'TASKS[{alias!r}] is {type(backend).__module__}.{type(backend).__qualname__}, '
                           'not mqueue_django.backend.MQueueBackend')
    return backend
