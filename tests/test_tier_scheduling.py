"""The two tiers run side by side, each on one pytest-xdist worker with its one stack.

pytest-xdist's controller sees only test ids, so tests/conftest.py tells a
test's tier from its id; a test whose id said otherwise than its parameters
would run on the wrong worker and start a second stack of its tier.
"""

from conftest import _tier_of, each_server_once, tier_in_id


def test_every_test_id_names_the_tier_the_test_runs_on(request):
    wrong = {item.nodeid: (_tier_of(item), tier_in_id(item.nodeid)) for item in request.session.items
             if (tier_in_id(item.nodeid) or "no stack") != _tier_of(item)}
    assert wrong == {}


def test_an_id_without_a_tier_is_a_test_without_a_stack():
    assert tier_in_id("tests/test_labs.py::test_x[compose-uwsgi]") == "compose"
    assert tier_in_id("tests/test_containers.py::test_y[native]") == "native"
    assert tier_in_id("tests/test_compose_tools.py::test_z[v1]") is None
    assert tier_in_id("tests/test_docs.py::test_w[docs/compose-native.md]") is None
    # a tier's tests skipped because the run named the other tier need no stack
    assert tier_in_id("tests/test_containers.py::test_v[compose-only]") is None
    # ... and the tests of both stack tiers skipped in a swarm run, whatever their other parameters
    assert tier_in_id("tests/test_endpoints.py::test_u[native-compose-only-67108865]") is None
    assert tier_in_id("tests/test_swarm.py::test_t[swarm]") == "swarm"


def test_a_module_marked_each_server_once_runs_each_server_on_its_one_tier_or_where_it_runs_at_all():
    four = [("native", "gunicorn"), ("native", "uwsgi"), ("compose", "gunicorn"), ("compose", "uwsgi")]
    assert each_server_once(four) == [("native", "uwsgi"), ("compose", "gunicorn")]
    # a server whose own tier is not in the run keeps the phases it has
    assert each_server_once([("native", "gunicorn"), ("compose", "uwsgi")]) == [("native", "gunicorn"),
                                                                                ("compose", "uwsgi")]
    assert each_server_once([("compose", "gunicorn"), ("compose", "uwsgi")]) == [("compose", "gunicorn"),
                                                                                 ("compose", "uwsgi")]
