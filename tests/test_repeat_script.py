"""scripts/repeat's own parts that need no stack: which tests run a lab, and how a load is ended."""

import importlib.machinery
import importlib.util
import re
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _repeat():
    loader = importlib.machinery.SourceFileLoader("repeat_script", str(REPO / "scripts" / "repeat"))
    spec = importlib.util.spec_from_loader("repeat_script", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_every_lab_hoptrace_lists_is_one_repeat_finds_a_stack_test_for():
    listed = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "wsgilab.hoptrace", "lab", "list"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert set(_repeat().lab_tests()) == {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_a_load_is_ended_with_everything_it_started_even_a_child_that_ignores_the_interrupt():
    repeat = _repeat()
    loop = subprocess.Popen(["bash", "-c", "trap '' INT; sleep 300; true"], start_new_session=True)
    time.sleep(0.5)
    assert len(repeat._group_members(loop.pid)) >= 2  # the shell and its sleep
    repeat.stop.__globals__["time"] = _FastClock()
    repeat.stop(loop)
    assert loop.returncode is not None and repeat._group_members(loop.pid) == []


class _FastClock:
    """time, with its monotonic clock running a minute per read: stop's two-minute grace passes at once."""

    def __init__(self):
        self.now = time.monotonic()

    def monotonic(self):
        self.now += 60
        return self.now

    def sleep(self, seconds):
        time.sleep(min(seconds, 0.1))


def test_what_repeat_starts_hears_an_interrupt_even_where_repeat_itself_was_started_deaf_to_it():
    import signal
    import sys

    repeat = _repeat()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `scripts/repeat ... &` from a script starts
    try:
        child = repeat.spawn([sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"],
                             stdout=subprocess.PIPE, text=True)
        said = child.communicate(timeout=30)[0]
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "default_int_handler" in said


def test_ending_a_load_removes_the_compose_projects_its_pytests_named_after_themselves():
    # A pytest killed mid-run leaves its project (wsgilab-test-PID) and the v1 smoke's (wsgilab-test-PID-v1);
    # the v1 one's networks, left standing, used up Docker's address pools for the next load.
    repeat = _repeat()
    loop = subprocess.Popen(["bash", "-c", "trap '' INT; sleep 300; true"], start_new_session=True)
    time.sleep(0.5)
    member = max(repeat._group_members(loop.pid))
    networks = {project: f"repeat-test-{project}" for project in (f"wsgilab-test-{member}-v1",
                                                                   f"wsgilab-test-{member}9-v1")}
    for project, network in networks.items():
        subprocess.run(["docker", "network", "create", "--label", f"com.docker.compose.project={project}", network],
                       check=True, capture_output=True)
    try:
        repeat.stop.__globals__["time"] = _FastClock()
        repeat.stop(loop)
        left = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True,
                              text=True, check=True).stdout.split()
        # Its member's project is gone; a project of a PID that was never in the group stays.
        assert [name for name in networks.values() if name in left] == [f"repeat-test-wsgilab-test-{member}9-v1"]
    finally:
        subprocess.run(["docker", "network", "rm", *networks.values()], capture_output=True)


def test_an_interrupted_pytests_results_are_the_runs_that_ended_and_say_it_was_cut(tmp_path):
    junit = tmp_path / "native.xml"
    junit.write_text('<testsuites><testsuite name="pytest">'
                     '<testcase classname="tests.test_labs" name="test_x[native-uwsgi-1-3]" time="2.5"/>'
                     '<testcase time="0.000"/></testsuite></testsuites>')
    repeat = _repeat()
    assert repeat.results(junit) == ({"tests/test_labs.py::test_x[native-uwsgi]": [(True, 2.5, "", "")]}, True)
    junit.write_text(junit.read_text().replace('<testcase time="0.000"/>', ""))
    assert repeat.results(junit)[1] is False


def test_the_swarm_repeats_follow_the_compose_tier_beside_the_native_one_as_in_ci():
    may_start = _repeat().swarm_may_start
    both = ("native", "compose")
    assert not may_start(both, {"native": "running", "compose": "running"})
    assert may_start(both, {"native": "running", "compose": "done"})  # beside native, never beside compose
    assert not may_start(both, {"native": "done", "compose": "done", "swarm": "running"})  # started once
    assert not may_start(("native",), {"native": "running"})  # the native tier alone: after it
    assert may_start(("native",), {"native": "done"})
    assert may_start(both, {})  # only swarm labs asked for


def test_a_load_runs_beside_whichever_line_still_repeats_and_never_a_compose_one_beside_the_swarm():
    to_start = _repeat().load_to_start
    both = ("native", "compose")
    assert to_start(both, True, {"native": "running", "compose": "running"}) is None
    assert to_start(both, True, {"native": "done", "compose": "running"}) == "native"
    assert to_start(both, True, {"native": "done", "compose": "done", "swarm": "running"}) == "native"
    assert to_start(both, True, {"native": "running", "compose": "done", "swarm": "running"}) is None
    assert to_start(both, True, {"native": "running", "compose": "done", "swarm": "done"}) == "compose"
    assert to_start(both, False, {"native": "running", "compose": "done"}) == "compose"
    assert to_start(("native",), False, {"native": "running"}) is None  # a single tier's load starts with it
    # Only swarm labs asked for: the native suite is their load, before the swarm starts and beside it.
    assert to_start(both, True, {}) == "native"
    assert to_start(both, True, {"swarm": "running"}) == "native"


def test_a_test_without_parameters_is_one_row_of_all_its_runs_and_a_stackless_one_counts_each_tiers(tmp_path):
    repeat = _repeat()
    junit = tmp_path / "native.xml"
    junit.write_text('<testsuites><testsuite name="pytest">'
                     '<testcase classname="tests.test_docs" name="test_y[1-2]" time="0.1"/>'
                     '<testcase classname="tests.test_docs" name="test_y[2-2]" time="0.3"/>'
                     '<testcase classname="tests.test_labs" name="test_x[native-uwsgi-12-20]" time="2.5"/>'
                     '</testsuite></testsuites>')
    runs, _ = repeat.results(junit)
    assert runs == {"tests/test_docs.py::test_y": [(True, 0.1, "", ""), (True, 0.3, "", "")],
                    "tests/test_labs.py::test_x[native-uwsgi]": [(True, 2.5, "", "")]}
    assert repeat.table(runs, {})[2:] == ["| test_y | - | - | 2/2 | 0.3 s |",
                                          "| test_x | native | uwsgi | 1/1 | 2.5 s |"]


def test_kept_reports_are_every_runs_output_passed_or_failed_under_its_test_and_run(tmp_path):
    junit = tmp_path / "compose.xml"
    junit.write_text('<testsuites><testsuite name="pytest">'
                     '<testcase classname="tests.test_labs" name="test_x[compose-uwsgi-1-2]" time="9.0">'
                     '<system-out>== lab queueing: one\n  ok   waited 812 ms</system-out></testcase>'
                     '<testcase classname="tests.test_labs" name="test_x[compose-uwsgi-2-2]" time="9.5">'
                     '<failure message="AssertionError: late">trace</failure>'
                     '<system-out>== lab queueing: two\n  FAIL waited 1207 ms</system-out></testcase>'
                     '</testsuite></testsuites>')
    repeat = _repeat()
    runs, cut = repeat.results(junit)
    assert not cut
    [first, second] = runs["tests/test_labs.py::test_x[compose-uwsgi]"]
    assert (first.passed, first.output) == (True, "== lab queueing: one\n  ok   waited 812 ms")
    assert (second.passed, second.failure) == (False, "AssertionError: late\ntrace")
    assert repeat.reports(runs).splitlines() == [
        "--- tests/test_labs.py::test_x[compose-uwsgi], run 1 of 2 (passed, 9.0 s):",
        "== lab queueing: one", "  ok   waited 812 ms", "",
        "--- tests/test_labs.py::test_x[compose-uwsgi], run 2 of 2 (failed, 9.5 s):",
        "== lab queueing: two", "  FAIL waited 1207 ms"]


def test_keep_reports_puts_each_labs_report_in_the_junit_file_of_the_test_that_ran_it(tmp_path):
    # A lab test that needs no stack (it runs killed-worker where nothing can be killed) in a pytest of its own,
    # with and without the option scripts/repeat --keep-reports passes on.
    test = "tests/test_labs.py::test_a_lab_that_changes_the_stack_says_so_when_it_cannot"
    said = {}
    for keep in (True, False):
        junit = tmp_path / f"{keep}.xml"
        subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q",
                        "-p", "no:xdist", f"--junitxml={junit}", "-o", "junit_logging=system-out",
                        *(["--keep-reports"] if keep else []), test], cwd=REPO, capture_output=True, check=True)
        runs, _ = _repeat().results(junit)
        [run] = runs[test]
        said[keep] = run.output
    assert said[True].startswith("== lab killed-worker:") and "result: 1 check(s) failed" in said[True]
    assert said[False].strip() == ""


def test_a_lab_named_as_a_tests_parameter_is_the_rows_lab_not_its_server(tmp_path):
    repeat = _repeat()
    junit = tmp_path / "native.xml"
    junit.write_text('<testsuites><testsuite name="pytest">'
                     '<testcase classname="tests.test_labs_more_servers" name="test_z[native-killed-worker-1-2]" '
                     'time="20.0"/></testsuite></testsuites>')
    runs, _ = repeat.results(junit)
    assert repeat.table(runs, {"tests/test_labs.py::test_x": "killed-worker"})[2:] == [
        "| killed-worker | native | - | 1/1 | 20.0 s |"]


def test_all_labs_takes_in_the_labs_on_granian_and_waitress_which_run_as_one_tests_parameters():
    repeat = _repeat()
    args = repeat.argparse.Namespace(all_labs=True, names=[])
    chosen = repeat.selected(args)
    file, _, function = repeat.MORE_SERVERS_TEST.partition("::")
    assert repeat.MORE_SERVERS_TEST in chosen and f"def {function}(" in (REPO / file).read_text()
    assert repeat.MORE_SERVERS_TEST not in repeat.selected(repeat.argparse.Namespace(all_labs=False,
                                                                                     names=["queueing"]))


def test_repeat_started_deaf_to_interrupts_still_stops_on_one_and_tables_the_runs_that_ended(tmp_path):
    import os
    import signal

    test = "tests/test_hoptrace_parsing.py::test_hoptrace_keeps_each_request_apart_and_skips_junk"
    # As `scripts/repeat ... &` from a script starts it: SIGINT ignored, handed down to what it runs.
    repeat = subprocess.Popen([str(REPO / "scripts" / "repeat"), "--times", "2000", "--tier", "native", test],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "TMPDIR": str(tmp_path)},  # where it keeps its logs
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 120
        while not any("..." in log.read_text() for log in tmp_path.glob("wsgilab-repeat-*/native.log")):
            assert repeat.poll() is None and time.monotonic() < deadline, "no run ended within 120 s"
            time.sleep(0.5)
        repeat.send_signal(signal.SIGINT)
        said = repeat.communicate(timeout=120)[0]
    finally:
        if repeat.poll() is None:
            repeat.kill()
    assert repeat.returncode == 1, said
    assert "repeat: interrupted" in said and "native interrupted" in said
    row = next(line for line in said.splitlines() if "test_hoptrace_keeps_each_request_apart" in line)
    passed, run = re.search(r"\| (\d+)/(\d+) \|", row).groups()
    assert passed == run and 0 < int(run) < 2000
