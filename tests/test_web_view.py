"""`hoptrace web` in a real browser: requests appear live, a waterfall reads as `hoptrace show` does, log text
stays text.

Native tier: `hoptrace web` reads the native stack's logs as they are
written (`tail -F`, on its stdin), and Debian's chromium, headless, driven by
Selenium through Debian's chromium-driver, loads the page.
"""

import json
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from lab_http import get
from lab_stacks import free_port, hop_log_lines, wait_until_served

from wsgilab.labs.rawhttp import exchange

ONLY_TIERS = ("native",)

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
#: How long the page may take to show what it must.
WAIT_S = 15


@pytest.fixture
def page(tier_stack):
    """(the browser on the page of a `hoptrace web` that follows the native stack's logs, the stack)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver are not installed (scripts/test installs them as root)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    tier_stack.use({"django": "gunicorn", "flask": "gunicorn", "raw": "gunicorn"})
    wait_until_served(tier_stack.port, tier_stack.servers)
    port = free_port()
    tail = subprocess.Popen(tier_stack.follow_logs_command(), stdout=subprocess.PIPE)
    web = subprocess.Popen([sys.executable, "-m", "wsgilab.hoptrace", "web", "--port", str(port)], stdin=tail.stdout,
                           stderr=subprocess.PIPE, text=True)
    tail.stdout.close()  # hoptrace web holds it now
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    browser = None
    try:
        assert web.stderr.readline().startswith("hoptrace web: http://127.0.0.1:")
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        browser.get(f"http://127.0.0.1:{port}/")
        _until(lambda: browser.find_element("id", "status").text == "live", "the page never went live")
        yield browser, tier_stack
    finally:
        if browser is not None:
            browser.quit()
        web.terminate()
        tail.terminate()
        web.wait(10)
        tail.wait(10)


def _until(check, what):
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            found = check()
        except Exception:  # noqa: BLE001 (the page is still changing: try again)
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _text(element):
    """An element's text as written (``.text`` is as rendered: runs of spaces collapsed)."""
    return element.get_attribute("textContent")


def _row_of(browser, request_id):
    return browser.find_element("css selector", f'#requests tr[data-request-id="{request_id}"]')


def _open(browser, request_id):
    """Click the request's row, found afresh (the list is redrawn as requests come), and wait for its waterfall."""
    _until(lambda: _row_of(browser, request_id).click() or True, f"no row to click for {request_id}")
    _until(lambda: _text(browser.find_element("id", "heading")).startswith(request_id), "no waterfall")


def _listed(browser):
    return [row.get_attribute("data-request-id")
            for row in browser.find_elements("css selector", "#requests tbody tr")]


def _hoptrace_show(stack, request_id, *options):
    logs = "\n".join(hop_log_lines(stack))
    return subprocess.run([sys.executable, "-m", "wsgilab.hoptrace", "show", request_id, *options],
                          input=logs, capture_output=True, text=True, check=True).stdout


def test_a_request_appears_live_and_its_waterfall_reads_as_hoptrace_show_does(page):
    browser, stack = page
    request_id = "web-" + uuid.uuid4().hex
    assert get(stack.port, "/flask/slow?ms=5", headers={"X-Request-ID": request_id}).status == 200
    _until(lambda: request_id in _listed(browser), "the request never appeared without a reload")
    _open(browser, request_id)
    shown = json.loads(_hoptrace_show(stack, request_id, "--json"))
    rows = browser.find_elements("css selector", "#rows tbody tr")
    assert [row.get_attribute("data-event") for row in rows] == [event["event"] for event in shown["events"]]
    # The same words as `hoptrace show`, row by row, and the same heading.
    text = _hoptrace_show(stack, request_id).splitlines()
    assert _text(browser.find_element("id", "heading")) == text[0]
    assert [_text(row.find_elements("css selector", "td")[2]) for row in rows] == [
        re.match(r"  \+ *[\d.]+ ms  \S+ +(.*)$", line).group(1) for line in text[1:]]
    bars = [_text(bar) for bar in browser.find_elements("css selector", "#bars .bar-label")]
    assert {"GET /flask/slow", "WSGI app(environ, start_response)", "view labflask.views.slow"} <= set(bars)
    # An event's fields, on click.
    rows[0].click()
    assert json.loads(browser.find_element("id", "fields").text)["event"] == shown["events"][0]["event"]
    # The stats of the requests in view, from hoptrace stats.
    _until(lambda: browser.find_elements("css selector", "#stats tbody tr"), "no stats table")


def test_an_id_sent_again_is_a_row_per_request_and_each_opens_its_own_waterfall(page):
    # A tour step run twice sends its id twice: each request has a trace of its own, and a row of its own.
    browser, stack = page
    request_id = "web-again-" + uuid.uuid4().hex
    for ms in (5, 60):
        assert get(stack.port, f"/flask/slow?ms={ms}", headers={"X-Request-ID": request_id}).status == 200
    _until(lambda: _listed(browser).count(request_id) == 2, "the second request got no row of its own")
    older, newer = json.loads(_hoptrace_show(stack, request_id, "--json"))["requests"]
    for one, query in ((older, "ms=5 "), (newer, "ms=60 ")):
        selector = f'#requests tr[data-request-id="{request_id}"][data-trace-id="{one["trace_id"]}"]'
        _until(lambda: browser.find_element("css selector", selector).click() or True, "no row to click")
        _until(lambda: query in _text(browser.find_element("id", "heading")), f"the {query}request was not drawn")
        rows = browser.find_elements("css selector", "#rows tbody tr")
        assert [row.get_attribute("data-event") for row in rows] == [event["event"] for event in one["events"]]
        assert len(browser.find_elements("css selector", '#requests tr[aria-selected="true"]')) == 1
        exports = [link.get_attribute("href") for link in browser.find_elements("css selector", "#exports a")]
        assert exports and all(f"trace={one['trace_id']}" in href for href in exports)


def test_the_filter_hides_what_it_should(page):
    browser, stack = page
    ids = {app: f"web-{app}-" + uuid.uuid4().hex for app in ("django", "flask")}
    for app, request_id in ids.items():
        get(stack.port, f"/{app}/", headers={"X-Request-ID": request_id})
    _until(lambda: set(ids.values()) <= set(_listed(browser)), "the requests never appeared")
    from selenium.webdriver.support.select import Select

    Select(browser.find_element("id", "f-app")).select_by_value("flask")
    _until(lambda: ids["django"] not in _listed(browser), "the django request stayed in view")
    # Read in _until: the list is redrawn as requests come, and a row read during a redraw is gone (stale).
    _until(lambda: ids["flask"] in _listed(browser) and all(
        row.find_elements("css selector", "td")[5].text == "flask"
        for row in browser.find_elements("css selector", "#requests tbody tr")),
        "the flask request left the view, or another app's request is in it")
    Select(browser.find_element("id", "f-app")).select_by_value("")
    browser.find_element("id", "f-id").send_keys(ids["django"])
    _until(lambda: _listed(browser) == [ids["django"]], "the id search did not narrow the list to one")


def test_hostile_log_text_is_shown_as_text_and_no_script_runs(page):
    browser, stack = page
    marker = uuid.uuid4().hex[:8]
    # A path with a script in it, quotes, and a forged request id that is markup: sent as raw bytes.
    path = f"/raw/{marker}<script>window.__pwned=1</script>\"'<img/src=x/onerror=window.__pwned=2>"
    reply = exchange(stack.port, (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                                  "X-Request-ID: <img src=x onerror=window.__pwned=3>\r\n\r\n").encode())
    request_id = reply.header("X-Request-ID")
    assert request_id and "<" not in request_id  # nginx replaced the forged id
    _until(lambda: request_id in _listed(browser), "the request never appeared")
    assert _until(lambda: _text(_row_of(browser, request_id).find_elements("css selector", "td")[2]), "no path") == path
    _open(browser, request_id)
    assert f"GET {path}" in _text(browser.find_element("id", "heading"))
    time.sleep(0.5)  # an image's onerror would have fired by now
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    assert browser.execute_script("return document.scripts.length") == 1  # the page's own viewer.js
    assert "<img" not in json.dumps(browser.execute_script("return document.title"))


def test_the_page_works_from_the_keyboard_and_fits_a_phone_screen(page):
    browser, stack = page
    from selenium.webdriver.common.keys import Keys

    request_id = "web-keys-" + uuid.uuid4().hex
    get(stack.port, "/raw/", headers={"X-Request-ID": request_id})
    _until(lambda: request_id in _listed(browser), "the request never appeared")
    def press_enter_on_its_row():  # the list is redrawn as requests come: find the row afresh
        row = _row_of(browser, request_id)
        assert row.get_attribute("tabindex") == "0"  # reachable with Tab
        row.send_keys(Keys.ENTER)
        return True

    _until(press_enter_on_its_row, "the row took no key")
    _until(lambda: _text(browser.find_element("id", "heading")).startswith(request_id), "Enter opened no waterfall")
    first = browser.find_elements("css selector", "#rows tbody tr")[0]
    first.send_keys(Keys.ENTER)
    assert json.loads(browser.find_element("id", "fields").text)["event"] == first.get_attribute("data-event")
    # A phone's width: one column, nothing wider than the screen.
    browser.set_window_size(390, 844)
    _until(lambda: browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"), "the page is wider than a phone")
