"""Marks for ./test's phases: a test of test_mqueue.py that takes no database backend needs no
server (SQLite files at most), so it is marked no_server, and ./test runs those first."""

import pytest


@pytest.hookimpl(tryfirst=True)   # before -m deselects by markers
def pytest_collection_modifyitems(items):
    for item in items:
        if 'backend' not in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.no_server)
