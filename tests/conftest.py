"""Fixtures that bring the stack up once per tier and point each test at it.

``--tier native`` runs nginx, gunicorn and uWSGI as local processes;
``--tier compose`` runs the real stack with docker compose; the default runs
both (side by side under pytest-xdist, one worker per tier). ``--tier swarm``
deploys it on Docker Swarm (scripts/swarm; tests/test_swarm.py only), and
never beside the compose tier: leaving the swarm it started cuts Docker's
DNS for every other running container, the compose stack's included
(docs/swarm.md). scripts/test runs it after the other two. A test that
takes the ``stack`` fixture runs in every *phase*: each tier with every app
on gunicorn, then every app on uWSGI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from lab_stacks import APPS, LOG_READS, SERVERS, ComposeStack, NativeStack
from swarm_stack import SwarmStack

try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # without pytest-xdist the tiers run one after the other
    LoadScopeScheduling = None

#: The tiers every stack test runs on (each with every app on gunicorn, then on uWSGI).
TIERS = ("native", "compose")
#: Tiers only the modules that name them (ONLY_TIERS) run on.
OWN_TIERS = ("swarm",)
#: Where both tiers run, the one tier each server's phase runs a test of an EACH_SERVER_ONCE module on: what those
#: tests prove is the app's, its server's and the trace's, which only how the processes start changes between
#: tiers, so each server once and each tier once (the stack as users run it, gunicorn under compose) cover them.
ONE_TIER_PER_SERVER = {"gunicorn": "compose", "uwsgi": "native"}


def pytest_addoption(parser):
    parser.addoption("--tier", choices=(*TIERS, *OWN_TIERS, "both"), default="both",
                     help="which stack to drive: native processes, docker compose, both (default), or "
                          "Docker Swarm (its own tests only, never beside compose)")
    parser.addoption("--both-tiers-run", action="store_true",
                     help="the other tier runs in a pytest of its own at the same time (scripts/test): a test "
                          "marked once_on (or one_server_on, or of an EACH_SERVER_ONCE module) then runs only "
                          "where it would if both ran in this one")
    parser.addoption("--stackless-share", default="1/1", metavar="K/N",
                     help="of the tests that need no stack, run the K-th of N shares (every N-th module by "
                          "name), so that the two tiers' pytests split them (scripts/test); 0/1 runs none")
    parser.addoption("--keep-reports", action="store_true",
                     help="print every lab's report as its test runs, passed or not (with -o "
                          "junit_logging=system-out the JUnit file keeps them: scripts/repeat --keep-reports)")


def selected_tiers(config) -> tuple[str, ...]:
    """The tiers this run drives, from --tier."""
    tier = config.getoption("--tier")
    return TIERS if tier == "both" else (tier,)


def pytest_generate_tests(metafunc):
    # A module may declare that its tests only make sense on some tiers
    # (containers exist only under compose).
    only = getattr(metafunc.module, "ONLY_TIERS", TIERS)
    tiers = [t for t in selected_tiers(metafunc.config) if t in only]
    # A test that shows the same thing on both tiers runs on one of them when both run (@pytest.mark.once_on).
    once_on = metafunc.definition.get_closest_marker("once_on")
    both_run = len(tiers) > 1 or metafunc.config.getoption("--both-tiers-run")
    if once_on is not None and both_run:
        tiers = [t for t in tiers if t == once_on.args[0]]
    # A test whose tier's own part is the same on every server runs there on one of them (@pytest.mark.one_server_on).
    one_server = metafunc.definition.get_closest_marker("one_server_on")
    if not tiers and {"phase", "tier"} & set(metafunc.fixturenames):
        # Say why instead of pytest's "got empty parameter set".
        name = "phase" if "phase" in metafunc.fixturenames else "tier"
        reason = f"{' and '.join(only)} tier only: {metafunc.module.__doc__.strip().splitlines()[0]}"
        if once_on is not None and once_on.args[0] in only:
            reason = f"the same on both tiers: runs on the {once_on.args[0]} tier where both run (once_on)"
        metafunc.parametrize(name, [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                             indirect=name == "phase", scope="session", ids=[f"{'-'.join(only)}-only"])
        return
    if "phase" in metafunc.fixturenames:
        # A module about one server's own part (ONLY_SERVERS) runs in that server's phase only: no swap of its own.
        servers = getattr(metafunc.module, "ONLY_SERVERS", SERVERS)
        phases = [(tier, server) for tier in tiers for server in servers
                  if not (one_server is not None and both_run and tier == one_server.args[0]
                          and server != one_server.args[1])]
        if (getattr(metafunc.module, "EACH_SERVER_ONCE", False) and both_run and once_on is one_server is None
                and metafunc.definition.get_closest_marker("both_tiers") is None):
            # Chosen among both tiers' phases: with --both-tiers-run the other tier's are in the other pytest.
            kept = each_server_once([(tier, server) for tier in TIERS if tier in only for server in servers])
            phases = [phase for phase in phases if phase in kept]
        metafunc.parametrize("phase", phases, indirect=True, scope="session",
                             ids=[f"{tier}-{server}" for tier, server in phases])
    if "tier" in metafunc.fixturenames:
        metafunc.parametrize("tier", tiers, scope="session")
    if "app" in metafunc.fixturenames:
        metafunc.parametrize("app", APPS)


def each_server_once(phases: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Of (tier, server) phases, each server's on its one tier (ONE_TIER_PER_SERVER), or all of it if not there."""
    return [(tier, server) for tier, server in phases
            if tier == ONE_TIER_PER_SERVER.get(server, tier) or (ONE_TIER_PER_SERVER[server], server) not in phases]


#: The tier in a test's id ("...[compose-uwsgi-raw]", "...[native]"): how pytest-xdist's controller,
#: which sees only ids, tells a test's tier. tests/test_tier_scheduling.py checks it against each test's own.
_TIER_IN_ID = re.compile(r"\[(native|compose|swarm)(?=[-\]])(?!(?:-(?:native|compose|swarm))*-only\b)")


def tier_in_id(nodeid: str) -> str | None:
    """The tier a test's id names, or None for a test that needs no stack."""
    match = _TIER_IN_ID.search(nodeid)
    return match.group(1) if match else None


if LoadScopeScheduling is not None:
    class TierScheduling(LoadScopeScheduling):
        """Every test of a tier in one unit of work, so one worker runs them all with that tier's one stack.

        scripts/test runs ``-n 2 --dist loadscope``: the two tiers then run
        side by side (most of a tier's time is labs waiting on purpose), and
        the tests that need no stack go to whichever worker is free.
        (pytest-xdist's own ``loadgroup`` marks a suffix on ``item.nodeid``,
        which pytest 9.2 no longer reads: pytest-dev/pytest-xdist#1386.)
        """

        def _split_scope(self, nodeid: str) -> str:
            return tier_in_id(nodeid) or nodeid


class _TierSchedulerPlugin:
    """Hands pytest-xdist the scheduler above; registered only where xdist runs (it alone knows the hook)."""

    @staticmethod
    def pytest_xdist_make_scheduler(config, log):
        return TierScheduling(config, log) if config.getoption("dist") == "loadscope" else None


def stackless_share(value: str) -> tuple[int, int]:
    """``K/N`` as (K, N), refused unless 0 <= K <= N and N >= 1."""
    share, _, shares = value.partition("/")
    if not (share.isdigit() and shares.isdigit() and 0 <= int(share) <= int(shares) >= 1):
        raise pytest.UsageError(f"--stackless-share wants K/N with 0 <= K <= N, N >= 1: not {value!r}")
    return int(share), int(shares)


def in_share(module: str, modules: list[str], share: int, shares: int) -> bool:
    """Whether ``module`` is in the ``share``-th of ``shares`` shares: every ``shares``-th of the sorted modules
    (one not among them, in the first)."""
    ordered = sorted(modules)
    return share > 0 and (ordered.index(module) if module in ordered else 0) % shares == share - 1


#: Every test module's name, the same list in both tiers' pytests (what each collects differs: a stack test of the
#: other tier shows there as a skipped test with no tier in its id), so that each share is the same in both.
TEST_MODULES = sorted(path.name for path in Path(__file__).parent.glob("test_*.py"))


def pytest_collection_modifyitems(config, items):
    share, shares = stackless_share(config.getoption("--stackless-share"))
    if (share, shares) == (1, 1):
        return
    kept, left = [], []
    for item in items:
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
        out = tier_in_id(item.nodeid) is None and not in_share(module, TEST_MODULES, share, shares)
        (left if out else kept).append(item)
    config.hook.pytest_deselected(items=left)
    items[:] = kept


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "once_on(tier): where both tiers run, run this test on that tier only (it would show the same "
                   "on the other; a run of one tier still runs it): each server once, not twice "
                   "(docs/testing-speed.md)")
    config.addinivalue_line(
        "markers", "one_server_on(tier, server): where both tiers run, run this test on that tier with that server "
                   "only: the tier's own part (Docker's restarts, say) is the same on every server, and each "
                   "server's own part shows on the other tier (docs/testing-speed.md)")
    config.addinivalue_line(
        "markers", "both_tiers(why): in a module whose tests run each server on one tier (EACH_SERVER_ONCE), this "
                   "test runs every phase: why says what differs between the tiers")
    if LoadScopeScheduling is not None and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_TierSchedulerPlugin(), "wsgilab-tier-scheduler")


@pytest.fixture(autouse=True, scope="session")
def _lab_reports_printed(request):
    """With --keep-reports, each lab's report is printed as its test runs, so a passing run keeps it too.

    A failed check's assertion shows its report; a passing run's margins (how late the rest of a burst came,
    how long a queue waited) are in the report alone, and a repeat that is to say how close it came needs them.
    """
    if not request.config.getoption("--keep-reports"):
        yield
        return
    from wsgilab import labs
    from wsgilab.labs.cli import render_report

    run = labs.run

    def run_and_print(name, target):
        report = run(name, target)
        print(render_report(report, [], 0), flush=True)
        return report

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(labs, "run", run_and_print)
        yield


def _running(stack):
    """Start ``stack``, hand it to the tests, and stop it whatever happens."""
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def native_stack():
    yield from _running(NativeStack())


@pytest.fixture(scope="session")
def compose_stack():
    yield from _running(ComposeStack())


@pytest.fixture(scope="session")
def swarm_stack():
    yield from _running(SwarmStack())


@pytest.fixture(scope="session")
def phase(request):
    """(tier, server) of the current phase: every app runs on ``server``."""
    return request.param


@dataclass
class Served:
    """The stack a test talks to, and which server each app is on."""

    stack: NativeStack | ComposeStack
    server: str

    @property
    def port(self) -> int:
        return self.stack.port


@pytest.fixture
def stack(phase, request) -> Served:
    """The phase's stack, with every app (back) on the phase's server."""
    tier, server = phase
    chosen = request.getfixturevalue(f"{tier}_stack")
    chosen.use({app: server for app in APPS})
    return Served(chosen, server)


@pytest.fixture
def tier_stack(tier, request) -> NativeStack | ComposeStack:
    """The stack of one tier, in whatever state the last test left it."""
    return request.getfixturevalue(f"{tier}_stack")


#: Seconds spent per tier (setup, call and teardown of its tests), for the run's closing summary.
_TIER_SECONDS: dict[str, float] = {}
#: Per tier, the reads of every hop's logs so far and their seconds (lab_stacks.LOG_READS, as each worker last
#: reported it: a tier runs in one worker, so its latest count is its total).
_LOG_READS: dict[str, tuple[int, float]] = {}


def _tier_of(item) -> str:
    params = getattr(getattr(item, "callspec", None), "params", {})
    phase = params.get("phase")
    tier = phase[0] if isinstance(phase, tuple) else params.get("tier")
    return tier if tier in (*TIERS, *OWN_TIERS) else "no stack"


def pytest_runtest_logreport(report):
    for tier, (calls, seconds) in (getattr(report, "wsgilab_log_reads", None) or {}).items():
        if calls >= _LOG_READS.get(tier, (0, 0.0))[0]:
            _LOG_READS[tier] = (calls, seconds)
    item_tier = getattr(report, "wsgilab_tier", None)
    if item_tier is not None:
        _TIER_SECONDS[item_tier] = _TIER_SECONDS.get(item_tier, 0.0) + report.duration


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().wsgilab_tier = _tier_of(item)
    outcome.get_result().wsgilab_log_reads = {tier: tuple(tally) for tier, tally in LOG_READS.items()}


def pytest_terminal_summary(terminalreporter):
    """Where the run's time went, per tier: CI prints it, and the next session sees what to cut."""
    if _TIER_SECONDS:
        terminalreporter.write_sep("-", "time per tier")
        for tier, seconds in sorted(_TIER_SECONDS.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{tier:<10} {seconds:8.1f} s")
    for tier, (calls, seconds) in sorted(_LOG_READS.items()):
        terminalreporter.write_line(f"{tier:<10} {seconds:8.1f} s of it reading the hops' logs ({calls} reads)")
