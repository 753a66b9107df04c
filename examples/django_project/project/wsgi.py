"""The example project's WSGI application, with mqueue's dashboard under /mqueue/ (docs/dashboard.md):
gunicorn project.wsgi, or any WSGI server. The dashboard asks for $MQUEUE_WEB_PASSWORD (user mqueue)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'project.settings')
application = get_wsgi_application()

import mqueue_web                                   # noqa: E402 (after Django is set up)
from mqueue_django.backend import backend_named     # noqa: E402

tasks = backend_named('default')                    # TASKS['default']: its tables, on Django's database
dashboard = mqueue_web.Dashboard(tasks.connect, tasks.registry, password=os.environ['MQUEUE_WEB_PASSWORD'])
application = mqueue_web.mount(application, '/mqueue', dashboard)
