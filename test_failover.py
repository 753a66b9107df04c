"""Issue 18's PostgreSQL failover scenario, reduced (bench/failover.py has the full one): a primary
and a streaming standby on this machine, workers connected with one multi-host URL
(target_session_attrs=read-write), the primary killed (immediate) mid-run and the standby
promoted, with synchronous and with asynchronous replication, the standby half a second behind.

The servers are the machine's own PostgreSQL binaries with their own data directories and ports
(bench/failover.py), never the main server's; ./test runs this file in a phase of its own.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / 'bench'))
import failover  # noqa: E402


@pytest.mark.parametrize('synchronous', [True, False], ids=['synchronous', 'asynchronous'])
def test_workers_go_on_after_a_failover_and_no_effect_is_doubled(synchronous):
    with failover.Pair(synchronous=synchronous) as pair:
        # (2 ms a task: the two thirds left when the standby falls behind take 1 s, longer than its lag)
        report = failover.scenario(pair, tasks=1500, workers=2, deadline=90.0, task_seconds=0.002)
    print(report)
    assert len(report['faults']) == 2 and report['workers_went_on_after_s'] is not None, report
    assert report['left'] == 0 and report['enqueued_during_run'] > 0, report
    assert report['acknowledged_before_failover'] > 0 and report['python_reruns'] > 0, report   # (at stake)
    # On the new primary every task that is there ran once: a completion lost with the old primary
    # took its task's writes with it (they commit together), so it runs again, once.
    assert report['duplicate_effects'] == 0, report
    # The standby was half a second behind when the primary died (its WAL sender stopped first).
    if synchronous:   # nothing acknowledged is lost: no completion runs again, no enqueue is gone
        assert report['lost'] == 0 and report['acknowledged_completions_run_again'] == 0, report
        assert report['acknowledged_enqueues_lost'] == 0, report
    else:   # what the standby had not received is gone: completions run again, enqueues are lost
        assert report['acknowledged_completions_run_again'] > 0 and report['acknowledged_enqueues_lost'] > 0, report
