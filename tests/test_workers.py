"""How the labs find a server's workers and how old they are (wsgilab/container/workers.py), on real processes.

No stack: this test process stands in for a server's master, and `sleep`
processes it starts for its workers, as /proc shows any process's children.
"""

from __future__ import annotations

import os
import subprocess
import time

from wsgilab.container.workers import age_s, children, main, youngest_worker_age_of


def test_a_processs_age_comes_from_proc_and_the_youngest_worker_is_the_one_started_last():
    before = time.monotonic()
    older = subprocess.Popen(["sleep", "30"])
    time.sleep(0.5)
    younger = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.5)
        assert {older.pid, younger.pid} <= set(children(os.getpid()))
        # /proc counts start times in clock ticks (10 ms): allow one either way.
        assert 0.98 <= age_s(older.pid) <= time.monotonic() - before + 0.02
        assert age_s(older.pid) - age_s(younger.pid) >= 0.48
        youngest = youngest_worker_age_of(os.getpid())
        assert abs(youngest - age_s(younger.pid)) < 0.1
    finally:
        older.kill()
        younger.kill()
        older.wait()
        younger.wait()


def test_the_command_names_both_of_its_commands_when_given_another(capsys):
    assert main(["no-such-command"]) == 64
    assert "kill-workers|youngest-worker-age" in capsys.readouterr().err
