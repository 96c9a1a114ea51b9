"""The two tiers run side by side, each on one pytest-xdist worker with its one stack.

pytest-xdist's controller sees only test ids, so tests/conftest.py tells a
test's tier from its id; a test whose id said otherwise than its parameters
would run on the wrong worker and start a second stack of its tier.
"""

import pytest
from conftest import _tier_of, each_server_once, in_share, stackless_share, tier_in_id


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


def test_the_two_shares_of_the_tests_that_need_no_stack_take_every_module_once_between_them():
    modules = [f"tests/test_{name}.py" for name in "edcba"]
    first = [m for m in modules if in_share(m, modules, 1, 2)]
    second = [m for m in modules if in_share(m, modules, 2, 2)]
    assert (sorted(first), sorted(second)) == (["tests/test_a.py", "tests/test_c.py", "tests/test_e.py"],
                                               ["tests/test_b.py", "tests/test_d.py"])
    assert all(in_share(m, modules, 1, 1) for m in modules) and not any(in_share(m, modules, 0, 1) for m in modules)
    assert in_share("tests/test_new.py", modules, 1, 2) and not in_share("tests/test_new.py", modules, 2, 2)


@pytest.mark.parametrize("value", ["3/2", "1/0", "a/2", "1", "-1/2"])
def test_a_share_outside_0_to_n_of_n_is_refused(value):
    with pytest.raises(pytest.UsageError, match="--stackless-share"):
        stackless_share(value)
