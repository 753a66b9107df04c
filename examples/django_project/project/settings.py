import os
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = 'example only'   # (a real project reads it from its environment)
DEBUG = True
ALLOWED_HOSTS = ['localhost', '127.0.0.1', 'testserver']
USE_TZ = True
TIME_ZONE = 'UTC'
DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'
ROOT_URLCONF = 'project.urls'
INSTALLED_APPS = ['mqueue_django', 'shop']


def database(url):
    """DATABASES['default'] from a URL: sqlite:///path, mysql://user@host:port/name or postgresql://..."""
    parts = urlsplit(url)
    if parts.scheme == 'sqlite':
        return {'ENGINE': 'django.db.backends.sqlite3', 'NAME': parts.path[1:],
                'OPTIONS': {'transaction_mode': 'IMMEDIATE'}}   # (tasks write: take the lock at BEGIN)
    return {'ENGINE': {'mysql': 'django.db.backends.mysql', 'postgresql': 'django.db.backends.postgresql'}[parts.scheme],
            'NAME': parts.path[1:], 'USER': parts.username or '', 'PASSWORD': parts.password or '',
            'HOST': parts.hostname or '', 'PORT': parts.port or '', 'CONN_MAX_AGE': 60}


DATABASES = {'default': database(os.environ.get('DATABASE_URL', f'sqlite:///{BASE_DIR / "example.db"}'))}

TASKS = {
    'default': {
        'BACKEND': 'mqueue_django.backend.MQueueBackend',
        'QUEUES': ['default', 'mail'],
        'OPTIONS': {
            'RETRIES': int(os.environ.get('TASK_RETRIES', 3)),
            'BACKOFF': float(os.environ.get('TASK_BACKOFF', 5)),
            'CRONS': {'shop.tasks.count_orders': '*/10 * * * *'},
        },
    },
}
