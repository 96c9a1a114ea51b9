"""The docs match the code: generated pages are current, links resolve, the files they name exist,
the README stays short.

No stack is needed.
"""

import re
import subprocess
import sys

import pytest
from lab_stacks import REPO

from wsgilab.labs import LABS, pages

DOCS = REPO / "docs"
README = REPO / "README.md"
MARKDOWN = [README, *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("file_name", sorted(pages.pages()))
def test_lab_pages_are_generated_from_the_labs(file_name):
    expected = pages.pages(DOCS / "labs" / "runs")[file_name]
    assert (DOCS / "labs" / file_name).read_text() == expected, \
        "run: python -m wsgilab.labs.pages docs/labs"


def test_every_lab_is_filed_under_what_the_client_sees():
    index = (DOCS / "labs" / "README.md").read_text()
    status_sections = index[index.index("## ", index.index("## The labs") + 1):]
    for name in LABS:
        assert f"]({name}.md)" in status_sections, name


def test_explain_prints_a_lab_without_a_stack():
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "lab", "slow-readers", "--explain"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    module = sys.modules.get("wsgilab.labs.slow_readers") or __import__("wsgilab.labs.slow_readers",
                                                                       fromlist=["TITLE"])
    assert done.stdout.startswith(f"== lab slow-readers: {module.TITLE}")
    assert module.EXPLANATION.strip() in done.stdout


def test_the_servers_page_lists_exactly_the_labs_that_run_on_granian_or_waitress():
    from wsgilab.labs import servers_of

    page = (DOCS / "servers.md").read_text()
    table = page[page.index("## What the labs show on Granian and Waitress"):]
    listed = set(re.findall(r"^\| \[([a-z-]+)\]\(labs/", table, flags=re.MULTILINE))
    assert listed == {name for name in LABS if {"granian", "waitress"} & set(servers_of(name))}
    done = subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "lab", "list"], capture_output=True, text=True,
                          timeout=30, check=True)
    assert {line.split()[0] for line in done.stdout.splitlines() if "Granian" in line} == listed


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_between_the_pages_resolves(page):
    text = page.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)#\s]*)(#[^)\s]*)?\)", text):
        path, anchor = target
        if path.startswith(("http://", "https://")):
            continue
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(path)
        elif anchor and linked.suffix == ".md":
            headings = {_slug(h) for h in re.findall(r"^#+ (.*)$", linked.read_text(), re.M)}
            if anchor[1:] not in headings:
                broken.append(path + anchor)
    assert broken == []


#: Where the repository's own files live: a path a doc names that starts with one of these is a file here.
_REPO_FOLDERS = ("tests/", "bench/", "scripts/", "wsgilab/", "nginx/", "docs/", "requirements/", "django_app/",
                 "flask_app/", "raw_wsgi_app/")
_FOLDERS = "|".join(re.escape(folder) for folder in _REPO_FOLDERS)
#: A path in backticks (up to the first space: `scripts/test --tier native`), or a link's target.
_NAMED_PATH = re.compile(rf"`((?:{_FOLDERS})[^`\s]*)|\]\(((?:{_FOLDERS})[^)\s]*)\)")


def _named_paths(text: str) -> set[str]:
    """The repository paths a page names, without a ``::test``, an ``#anchor`` or trailing punctuation."""
    named = set()
    for match in _NAMED_PATH.finditer(text):
        path = (match.group(1) or match.group(2)).split("::")[0].split("#")[0].rstrip(".,;:)'\"")
        if not any(placeholder in path for placeholder in ("*", "<", "NAME", "...")):
            named.add(path)
    return named


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_every_repository_file_a_page_names_exists(page):
    missing = sorted(path for path in _named_paths(page.read_text()) if not (REPO / path).exists())
    assert missing == []


def test_readme_is_short_and_whole():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "@@" not in text


def test_ci_runs_the_test_command_the_readme_gives():
    readme_command = re.search(r"## Run the tests\n\n```\n(.+)\n```", README.read_text()).group(1)
    assert readme_command in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("name", sorted(LABS))
def test_every_lab_page_shows_a_real_run_that_passed(name):
    run = DOCS / "labs" / "runs" / f"{name}.txt"
    assert run.exists(), f"record one: hoptrace lab {name} > {run.relative_to(REPO)}"
    text = run.read_text()
    assert text.startswith(f"== lab {name}: ") and text.rstrip().endswith("result: every check passed")


#: A printed trace's heading: id, method, target, status, duration, then who served it.
_TRACE_HEADING = re.compile(r"^  (\S+)  [A-Z]+ \S+  (\d{3})  [\d.]+ ms  (.*)$")


@pytest.mark.parametrize("run", sorted(p.name for p in (DOCS / "labs" / "runs").glob("*.txt")))
def test_every_trace_a_lab_run_prints_of_a_request_an_app_answered_shows_the_app_hops(run):
    # A request an app answered (a 2xx or 3xx) was logged by the app's hops; a printed trace without them
    # means the lab printed records it read too early, or after the containers that wrote them were gone.
    missing = [match.group(1) for line in (DOCS / "labs" / "runs" / run).read_text().splitlines()
               if (match := _TRACE_HEADING.match(line)) and match.group(2)[0] in "23"
               and "no app hop logged it" in match.group(3)]
    assert missing == [], f"re-record docs/labs/runs/{run} (hoptrace lab {run[:-4]}) once the lab keeps its records"


def test_the_raw_apps_callable_in_the_tour_is_its_code():
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "tour.md").read_text(), re.S)
    code = (REPO / "raw_wsgi_app" / "raw_app.py").read_text().splitlines()
    lines = [line for block in blocks for line in block.splitlines() if line.strip() and line.strip() != "..."]
    assert blocks and [line for line in lines if line not in code] == []


def test_the_tiny_server_in_the_tour_is_its_code():
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "tour-wire.md").read_text(), re.S)
    code = (REPO / "raw_wsgi_app" / "tiny_server.py").read_text().splitlines()
    lines = [line for block in blocks for line in block.splitlines() if line.strip() and line.strip() != "..."]
    assert blocks and [line for line in lines if line not in code] == []


def test_the_raw_apps_side_by_side_in_asgi_md_are_their_code():
    page = (DOCS / "asgi.md").read_text()
    code = (REPO / "raw_wsgi_app" / "raw_app.py").read_text() + (REPO / "raw_wsgi_app" / "raw_asgi.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(blocks) == 2 and lines
    assert [line for line in lines if line not in code.splitlines()] == []


def test_every_nginx_error_line_the_502_page_names_was_seen_in_a_recorded_run_or_a_tour_step():
    # docs/502.md tells the causes of a 502 apart by nginx's own words; each must be words nginx wrote here.
    table = [line for line in (DOCS / "502.md").read_text().splitlines() if line.startswith("| ")][1:]
    rows = [line for line in table if line.startswith("| `")]
    assert rows and all(row in rows or row.startswith("| the same |") for row in table), table  # each row quotes
    quoted = [re.match(r"\| `([^`]+)`", row).group(1).rstrip(".") for row in rows]
    recorded = [*(DOCS / "labs" / "runs").glob("*.txt"), *DOCS.glob("tour*.md")]
    # Only a trace's own lines: nginx's words as hoptrace showed them, not a lab's explanation quoting them.
    seen = "\n".join(line for path in recorded for line in path.read_text().splitlines()
                     if " nginx    nginx error log [" in line)
    assert [line for line in quoted if line not in seen] == []
