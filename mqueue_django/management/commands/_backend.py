"""The --backend option of the mqueue commands."""
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import CommandError

from mqueue_django.backend import MQueueBackend
from mqueue_django.backend import backend_named as _backend_named


def add_backend_option(parser):
    parser.add_argument('--backend', default='default', metavar='ALIAS',
                        help="the TASKS backend (an mqueue_django one) whose tasks and tables to use (default 'default')")


def backend_named(alias: str) -> MQueueBackend:
    try:
        return _backend_named(alias)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None
