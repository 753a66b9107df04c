#!/usr/bin/env python
"""The example Django project of docs/django.md: python manage.py migrate, then runserver and
mqueue_worker. The database is $DATABASE_URL (default SQLite, ./example.db)."""
import os
import sys

if __name__ == '__main__':
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'project.settings')
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
