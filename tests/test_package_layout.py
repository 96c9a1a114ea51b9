"""The package's folders keep the container side and the host side apart.

``wsgilab/container/`` runs inside the app containers, beside every request;
``wsgilab/hoptrace/`` and ``wsgilab/labs/`` run on the host. The container
side must never import the host side: the image would carry (and start up
with) code it has no use for, and the instrumentation would grow a
dependency on the tool that reads it. The contracts both sides share,
``wsgilab.trace_format`` and ``wsgilab.settings``, sit at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from lab_stacks import REPO

PACKAGE = REPO / "wsgilab"
CONTAINER = PACKAGE / "container"
#: What container-side code may import from the package: itself and the shared contracts.
CONTAINER_MAY_IMPORT = ("wsgilab.container", "wsgilab.trace_format", "wsgilab.trace_context", "wsgilab.settings",
                        "wsgilab.setting_values")
MAX_MODULE_LINES = 300


def _imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, absolute, resolving relative imports."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            else:
                found.add(node.module or "")
    return found


def _package_imports(path: Path, source: str | None = None) -> set[str]:
    """The modules of wsgilab that the file at ``path`` imports."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = _imported_modules(path.read_text() if source is None else source, package)
    return {name for name in names if name == "wsgilab" or name.startswith("wsgilab.")}


def test_container_side_never_imports_the_host_side():
    offending = {}
    for path in sorted(CONTAINER.rglob("*.py")):
        bad = {name for name in _package_imports(path)
               if not any(name == allowed or name.startswith(allowed + ".") for allowed in CONTAINER_MAY_IMPORT)}
        if bad:
            offending[str(path.relative_to(REPO))] = sorted(bad)
    assert offending == {}


def test_the_boundary_check_sees_a_host_import():
    # The check above must be able to fail: a container module importing the host tool.
    probe = "from wsgilab.hoptrace.records import scan\nfrom . import launch\nfrom ..labs import kit\n"
    assert _package_imports(CONTAINER / "probe.py", probe) == {
        "wsgilab.hoptrace.records", "wsgilab.container", "wsgilab.labs"}


def test_apps_and_server_configs_load_only_container_code():
    # What the app images run: the apps' own folders and the two servers' config files.
    sources = [*REPO.glob("*_app/**/*.py"), REPO / "gunicorn.conf.py"]
    host = {str(p.relative_to(REPO)): sorted(n for n in _package_imports(p)
                                             if not n.startswith(CONTAINER_MAY_IMPORT))
            for p in sources}
    assert {name: bad for name, bad in host.items() if bad} == {}
    for line in (REPO / "uwsgi.ini").read_text().splitlines():
        if "wsgilab." in line and not line.lstrip().startswith(";"):
            assert "wsgilab.container." in line, line


def test_no_module_is_over_the_size_that_keeps_it_to_one_job():
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_both_stack_controls_implement_the_interface_the_labs_are_typed_against():
    from lab_stacks import ComposeStack, NativeStack

    from wsgilab.labs.control import ComposeControl, StackControl

    methods = {name for name in vars(StackControl) if not name.startswith("_")}
    assert len(methods) == 10
    for implementation in (ComposeControl, NativeStack, ComposeStack):
        missing = {name for name in methods if not callable(getattr(implementation, name, None))}
        assert missing == set(), implementation.__name__
    assert isinstance(ComposeControl(["docker", "compose"]), StackControl)


def test_hoptrace_starts_without_importing_the_database_driver():
    # psycopg was half of every `hoptrace` command's start-up, imported only for the statement's shape
    # (wsgilab.container.sql_text): the host tool reads PostgreSQL's log, it never connects to it.
    probe = ("import sys, wsgilab.hoptrace.cli, wsgilab.hoptrace.export; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
