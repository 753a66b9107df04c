"""Issue 18's Galera scenarios, reduced (bench/galera.py has the full ones): a three-node MariaDB
Galera cluster on this machine, shared by the tests of this file.

- Workers on every node with the lease as the only fence between nodes, tasks enqueued from every
  node in the caller's transaction (and some rolled back there), a cron firing every second with a
  scheduler in every worker, and one node SIGKILLed mid-run and started again.
- A task running ten times its lease with a worker on every node.

The nodes are the machine's own mariadbd with their own data directories, ports and pid files
(bench/galera.py), never the main server's; ./test runs this file in a phase of its own. Under
CI=true a missing galera-4 or rsync fails the tests instead of skipping them.
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / 'bench'))
import galera  # noqa: E402


@pytest.fixture(scope='module')
def cluster():
    missing = [what for what, there in (('galera-4', os.path.exists(galera.PROVIDER)),
                                        ('rsync', shutil.which('rsync')), ('mariadbd', os.path.exists(galera.MARIADBD)))
               if not there]
    if missing:
        message = f'a Galera cluster needs {", ".join(missing)} (apt-get install galera-4 rsync mariadb-server)'
        pytest.fail(message) if os.environ.get('CI') else pytest.skip(message)
    with galera.Cluster() as cluster:
        yield cluster


def test_workers_on_every_node_of_a_galera_cluster_lose_nothing_and_duplicate_no_effect_when_a_node_dies(cluster):
    report = galera.scenario(cluster, tasks=1500, workers_per_node=1, kill=1, lease=3.0, deadline=100.0)
    assert report['duplicate_effects'] == 0 and report['lost'] == 0 and report['left'] == 0, report
    assert report['rolled_back_ran'] == 0, report       # a rolled-back enqueue never existed, on any node
    assert report['dead'] == 0 and report['task_failures'] == {}, report   # conflicts are not failures
    assert report['counter'] == report['counter_tasks'] > 0, report   # a row written from every node: once each
    assert report['cron_fires'] >= 3 and report['cron_duplicate_effects'] == 0, report
    assert report['restarted_node_ran'] > 0, report     # the killed node's worker reconnected and ran tasks
    assert report['workers_reporting'] == 3 and len(report['faults']) == 2, report
    assert all(report['effects_per_node'].get(f'node{n}') for n in range(3)), report


def test_a_task_running_ten_times_its_lease_runs_once_with_a_worker_on_every_node(cluster):
    report = galera.long_task(cluster, seconds=5.0, lease=0.5)
    assert report['cluster_mode'] == [True, True, True], report   # told by the server, not by an option
    assert report['python_runs'] == 1 and report['effects'] == 1 and report['left'] == 0, report
    assert report['looks'] >= 10 and report['running_at_every_look'], report
