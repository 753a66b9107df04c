from django.core.management.base import BaseCommand, CommandError

import mqueue
from mqueue_django.management.commands._backend import add_backend_option, backend_named

COMMANDS = ('status', 'dead', 'retry', 'cancel', 'purge', 'result', 'crons', 'init-db')
# (not enqueue: a Django task is enqueued with task.enqueue(), whose row holds args and kwargs)


class Command(BaseCommand):
    help = ("mqueue's operating commands on a TASKS backend's tables, on Django's database: "
            f"{', '.join(COMMANDS)} (`manage.py mqueue status --help`; the worker is manage.py mqueue_worker, "
            'the tables come with manage.py migrate)')

    def add_arguments(self, parser):
        add_backend_option(parser)
        parser.add_argument('command', choices=COMMANDS, metavar='COMMAND', help=', '.join(COMMANDS))
        parser.add_argument('arguments', nargs='...', help="the command's own, as for the mqueue command")

    def handle(self, *args, **options):
        arguments, alias = list(options['arguments']), options['backend']
        for at, argument in enumerate(arguments):   # (also after the command, where the rest goes to mqueue's own)
            if argument.startswith('--backend='):
                alias = arguments.pop(at).split('=', 1)[1]
                break
            if argument == '--backend' and at + 1 < len(arguments):
                alias = arguments.pop(at + 1)
                del arguments[at]
                break
        backend = backend_named(alias)
        backend.discover()
        status = mqueue.main([options['command'], *arguments], database=(backend.registry, backend.connect))
        if status:
            raise CommandError(f'mqueue {options["command"]} failed', returncode=status)
