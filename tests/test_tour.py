"""The tour (docs/tour.md, tour-stack.md, tour-wire.md, asgi.md), every step run against the compose stack as a reader
runs it.

Compose tier: the tour is written for `docker compose up`. Each console block
of the page runs in one bash (wsgilab/tour.py), with `hoptrace` on PATH and
`COMPOSE_PROJECT_NAME` pointing hoptrace and the labs at the test project;
a block marked `<!-- tour: RAW_SERVER=uwsgi -->` runs with that app on uWSGI,
and one marked with another setting (`RAW_WSGI_MIDDLEWARE=...`) with it.
A step fails when a line the page shows (ids, numbers and addresses aside,
in any order) is no longer printed: regenerate the page with `python -m wsgilab.tour --write`
against a stack on :8080 once the change is meant.
"""

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
        _, differences = tour.run(pages, tier_stack.port, env, use, say=lambda _: None)
    finally:
        use({}, {})
    assert differences == []


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
