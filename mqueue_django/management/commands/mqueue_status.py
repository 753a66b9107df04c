from django.core.management.base import BaseCommand, CommandError

import mqueue
from mqueue_django.management.commands._backend import add_backend_option, backend_named


class Command(BaseCommand):
    help = ('Each queue of a TASKS backend: tasks ready, scheduled, running and dead, the oldest ready one, and '
            'running tasks past their timeout (as `mqueue status`; `manage.py mqueue` has the other commands)')

    def add_arguments(self, parser):
        add_backend_option(parser)
        parser.add_argument('--queue', metavar='Q', help='only this queue')
        parser.add_argument('--json', action='store_true', help='print JSON instead of a table (for scripts)')

    def handle(self, *args, **options):
        backend = backend_named(options['backend'])
        argv = ['status', *(['--queue', options['queue']] if options['queue'] else []),
                *(['--json'] if options['json'] else [])]
        status = mqueue.main(argv, database=(backend.registry, backend.connect))
        if status:
            raise CommandError('mqueue status failed', returncode=status)
