import logging
import sys

from django.core.management.base import BaseCommand, CommandError

import mqueue
from mqueue_django.management.commands._backend import add_backend_option, backend_named


class Command(BaseCommand):
    help = ('Run an mqueue worker for a TASKS backend until SIGTERM/SIGINT (with --burst: until no due task is '
            'left): each task inside the transaction.atomic() that deletes its row. A first signal lets running '
            'tasks finish and commit; a second abandons them (they return to the queue).')

    def add_arguments(self, parser):
        parser.add_argument('queues', nargs='*', metavar='QUEUE', help="queues to serve (default: the backend's QUEUES)")
        parser.add_argument('--queue', action='append', dest='more_queues', default=[], metavar='Q',
                            help='a queue to serve, as `mqueue worker --queue` (repeatable)')
        add_backend_option(parser)
        parser.add_argument('--concurrency', type=int, default=1, metavar='N', help='worker threads (default 1)')
        parser.add_argument('--batch', type=int, default=mqueue.DEFAULT_BATCH, metavar='N',
                            help=f'tasks claimed and run per transaction (default {mqueue.DEFAULT_BATCH})')
        parser.add_argument('--burst', action='store_true', help='exit once no due task is left')
        parser.add_argument('--timeout', type=float, metavar='SECONDS',
                            help="seconds an attempt may run (default: the backend's TIMEOUT option, else none)")
        parser.add_argument('--no-crons', action='store_true', help="don't schedule the backend's CRONS here")
        parser.add_argument('--no-rescue', action='store_true',
                            help="a dead worker's tasks return when their lease ends, not within seconds "
                                 '(a Galera cluster)')

    def handle(self, *args, **options):
        backend = backend_named(options['backend'])
        queues = options['queues']
        mqueue_logger = logging.getLogger('mqueue')
        if not logging.getLogger().handlers and not mqueue_logger.handlers:   # (LOGGING leaves mqueue's alone)
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
            mqueue_logger.addHandler(handler)
            mqueue_logger.setLevel(logging.INFO if options['verbosity'] >= 1 else logging.WARNING)
        try:
            worker = backend.worker([*queues, *options['more_queues']], concurrency=options['concurrency'], batch=options['batch'],
                                    crons=not options['no_crons'], timeout=options['timeout'] or backend.timeout,
                                    rescue_after=None if options['no_rescue'] else mqueue.DEFAULT_RESCUE_AFTER)
            worker.run(burst=options['burst'])
        except (mqueue.MQueueError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        except KeyboardInterrupt as exc:   # a second signal abandoned the running tasks
            signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 2
            sys.exit(128 + signum)
