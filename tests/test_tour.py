"""The tour (docs/tour.md, tour-stack.md, tour-nginx.md, tour-wire.md, asgi.md), every step run against the compose
stack as a reader runs it.

Compose tier: the tour is written for `docker compose up`. Each console block
of the page runs in one bash (wsgilab/tour.py), with `hoptrace` on PATH and
`COMPOSE_PROJECT_NAME` pointing hoptrace and the labs at the test project;
a block marked `<!-- tour: RAW_SERVER=uwsgi -->` runs with that app on uWSGI,
and one marked with another setting (`RAW_WSGI_MIDDLEWARE=...`) with it.
A step fails when a line the page shows (ids, numbers and addresses aside,
in any order) is no longer printed: regenerate the page with `python -m wsgilab.tour --write`
against a stack on :8080 once the change is meant. It fails too when a claim
the page states before a block (`<!-- tour-check: waited {} ms > 1000 -->`)
does not hold: that is the step's lesson no longer happening.
"""

import pytest
from lab_stacks import APPS, wait_until_served

from wsgilab import tour

ONLY_TIERS = ("compose",)


def test_the_tour_has_its_steps_and_each_names_a_command():
    steps = [step for page in tour.PAGES for step in tour.steps(page.read_text())]
    assert len(steps) >= 16 and all(step.commands for step in steps)
    assert all(any(line.strip() for output in step.outputs for line in output) for step in steps), \
        "a step shows no output: run python -m wsgilab.tour --write"


def test_every_step_of_the_tour_prints_what_the_page_shows(tier_stack):
    def use(servers, settings):
        served = {app: servers.get(app, "gunicorn") for app in APPS}
        tier_stack.reconfigure(settings)  # recreates what the settings change, and does not wait
        tier_stack.use(served)
        wait_until_served(tier_stack.port, served)

    env = tour.tour_environment({"COMPOSE_PROJECT_NAME": tier_stack.project})
    try:
        pages = {page.name: page.read_text() for page in tour.PAGES}
        _, differences, broken = tour.run(pages, tier_stack.port, env, use, say=lambda _: None)
    finally:
        use({}, {})
    assert differences == [] and broken == []


def test_a_changed_output_is_caught_but_new_ids_and_timings_are_not():
    shown = ["+   1.459 ms  gunicorn SyncWorker worker pid 11 picked it up (its request 1)", "...",
             '  "server": "gunicorn"']
    assert tour.shape_differences(shown, ["+  12.001 ms  gunicorn SyncWorker worker pid 7 picked it up (its request 3)",
                                          "anything", '  "server": "gunicorn"']) == []
    assert tour.shape_differences(shown, ['  "server": "uwsgi"']) == shown[::2]


def test_a_packets_lengths_in_hex_follow_the_port_but_its_keys_are_held():
    shown = ["  09 00 HTTP_HOST  0e 00 localhost:8080", "  header: 592 bytes of variables (0x0250, little-endian)"]
    assert tour.shape_differences(shown, ["  09 00 HTTP_HOST  0f 00 localhost:41234",
                                          "  header: 590 bytes of variables (0x024e, little-endian)"]) == []
    assert tour.shape_differences(shown[:1], ["  09 00 HTTP_PORT  0f 00 localhost:41234"]) == shown[:1]


def test_a_block_reads_its_settings_and_its_claims_from_the_lines_before_it():
    page = ("<!-- tour: RAW_SERVER=uwsgi WSGI_WORKERS=2 -->\n<!-- tour-check: waited {} ms > 1000 -->\n"
            "<!-- tour-check: a before b -->\n```console\n$ true\nout\n```\n")
    [step] = tour.steps(page)
    assert (step.servers, step.settings) == ({"raw": "uwsgi"}, {"WSGI_WORKERS": "2"})
    assert step.claims == ["waited {} ms > 1000", "a before b"] and step.commands == ["true"]


def test_a_claim_of_a_number_holds_on_every_line_that_has_it_and_needs_one():
    printed = ["  +   0.000 ms  queue    handed on by nginx; waited 2153.7 ms for a worker", "other 5 ms"]
    assert tour.broken_claims(["waited {} ms for a worker > 1000"], [printed]) == []
    assert tour.broken_claims(["waited {} ms for a worker < 100"], [printed]) == [
        "'waited {} ms for a worker < 100': printed [2153.7]"]
    assert tour.broken_claims(["waited {} ms for a worker > 1000"], [printed, ["waited 1.8 ms for a worker"]])
    assert tour.broken_claims(["waited {} ms for the event loop < 100"], [printed]) == [
        "'waited {} ms for the event loop < 100': printed no such line"]


def test_a_claim_of_some_line_needs_one_line_past_the_bound_not_all():
    printed = ["waited 1.4 ms for a worker", "waited 306.3 ms for a worker"]
    assert tour.broken_claims(["some: waited {} ms for a worker > 250", "some: waited {} ms for a worker < 50"],
                              [printed]) == []
    assert tour.broken_claims(["waited {} ms for a worker > 250"], [printed])
    assert tour.broken_claims(["some: waited {} ms for a worker > 400"], [printed]) == [
        "'some: waited {} ms for a worker > 400': printed [1.4, 306.3]"]


def test_a_claim_can_read_one_commands_lines():
    outputs = [["413, 0 bytes sent"], ["413, 1245184 bytes sent"]]
    assert tour.broken_claims(["command 1: 413, {} bytes sent == 0", "command 2: 413, {} bytes sent > 100000"],
                              outputs) == []
    assert tour.broken_claims(["413, {} bytes sent == 0"], outputs) == [
        "'413, {} bytes sent == 0': printed [0.0, 1245184.0]"]
    assert tour.broken_claims(["command 3: 413, {} bytes sent == 0"], outputs)


def test_a_claim_of_an_order_needs_both_lines_the_first_one_first():
    printed = ["start_response('200 OK', 2 headers)", "flask    teardown_request hooks", "first body chunk, 300 bytes"]
    assert tour.broken_claims(["teardown_request hooks before first body chunk"], [printed[:1], printed[1:]]) == []
    assert tour.broken_claims(["first body chunk before teardown_request hooks"], [printed])
    assert tour.broken_claims(["teardown_request hooks before close() called"], [printed])
    with pytest.raises(ValueError, match="cannot read"):
        tour.broken_claims(["teardown_request hooks, then the body"], [printed])
    with pytest.raises(ValueError, match="some: states a number"):  # "some" of an order means nothing
        tour.broken_claims(["some: teardown_request hooks before first body chunk"], [printed])


def test_every_claim_a_page_states_holds_on_the_output_it_shows():
    stated = [(page.name, number, step) for page in tour.PAGES
              for number, step in enumerate(tour.steps(page.read_text()), 1) if step.claims]
    assert len(stated) >= 5
    assert [(name, number, tour.broken_claims(step.claims, step.outputs)) for name, number, step in stated
            if tour.broken_claims(step.claims, step.outputs)] == []
