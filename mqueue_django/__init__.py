"""mqueue for Django: a backend for Django's Tasks framework whose tasks run inside the transaction
that deletes their row, on Django's own connection, so their ORM writes commit with their
completion and roll back with their failure.

    INSTALLED_APPS = [..., 'mqueue_django']
    TASKS = {'default': {'BACKEND': 'mqueue_django.backend.MQueueBackend', 'QUEUES': ['default']}}

then ``manage.py migrate`` (mqueue's tables), ``manage.py mqueue_worker`` (the worker) and
``manage.py mqueue status`` (what operators see). docs/django.md has the whole guide. Needs Django
6's ``django.tasks``, or the ``django-tasks`` backport on older Django; ``mqueue.py`` itself never
imports Django.
"""
