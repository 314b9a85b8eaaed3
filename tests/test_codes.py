"""The kernel codes are defined once (csfpk._kernels.codes) and named in one place each (issue 9)."""

import ast
from pathlib import Path

import pytest

from csfpk import metrics, model, schedule, status
from csfpk._kernels import codes
from csfpk.status import Status

KERNELS = Path(codes.__file__).parent
GROUPS = {"ACTIONS": codes.ACTIONS, "STATUSES": codes.STATUSES, "METRICS": codes.METRICS, "STATS": codes.STATS,
          "NL": codes.NL, "DECISIONS": codes.DECISIONS, "METHODS": codes.METHODS, "SWITCH": codes.SWITCH}


def test_every_status_code_has_an_enum_member_with_a_message_and_vice_versa():
    assert {m.name: int(m) for m in Status} == codes.STATUSES
    for m in Status:
        assert isinstance(m.message, str) and len(m.message) > 10 or m is Status.OK
    assert len({m.message for m in Status}) == len(Status)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_codes_within_a_group_are_distinct(group):
    values = list(GROUPS[group].values())
    assert len(set(values)) == len(values)


def test_every_upper_case_int_of_codes_belongs_to_exactly_one_group():
    """A code added to codes.py without its group dict would be invisible to the checks here."""
    grouped = {name.upper() for g in GROUPS.values() for name in g}
    singles = {"SEGMENT_CONTINUE", "STIFFNESS_SWITCH", "N_METRICS", "N_STATS", "NL_SIZE", "N_SWITCH",
               "NO_STEP_BACK_GRADE"}
    defined = {k for k, v in vars(codes).items() if k.isupper() and isinstance(v, int)}
    assert defined == grouped | singles
    assert codes.SEGMENT_CONTINUE not in codes.STATUSES.values()
    assert codes.STIFFNESS_SWITCH not in codes.STATUSES.values() and codes.STIFFNESS_SWITCH != codes.SEGMENT_CONTINUE
    assert codes.NO_STEP_BACK_GRADE > 4  # above every CTCAE grade: an escalation without step-back never steps back


def test_metric_slots_match_the_names_of_csfpk_metrics():
    assert metrics.NAMES == tuple(sorted(codes.METRICS, key=codes.METRICS.get))
    assert sorted(codes.METRICS.values()) == list(range(codes.N_METRICS))


def test_stat_slots_are_the_keys_of_simulation_stats():
    import csfpk

    assert sorted(codes.STATS.values()) == list(range(codes.N_STATS))
    res = csfpk.simulate("lorlatinib", csfpk.Regimen.every(amt=100, ii=24, n=1), t_end=24, method="stiff")
    assert list(res.stats) == list(codes.STATS)


def test_schedule_uses_the_kernel_action_codes():
    for name, value in codes.ACTIONS.items():
        assert getattr(schedule, name) == value


def _module_level_assignments(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    names.add(n.id)
    return names


@pytest.mark.parametrize("path", [p for p in sorted(KERNELS.glob("*.py")) if p.name != "codes.py"]
                         + [Path(schedule.__file__), Path(status.__file__), Path(model.__file__)], ids=lambda p: p.name)
def test_no_module_defines_a_kernel_code_again(path):
    all_codes = {name.upper() for g in GROUPS.values() for name in g} | {"SEGMENT_CONTINUE", "N_METRICS", "N_STATS",
                                                                          "NL_SIZE", "STIFFNESS_SWITCH", "N_SWITCH"}
    redefined = _module_level_assignments(path) & (all_codes | {f"STATUS_{n}" for n in codes.STATUSES})
    assert not redefined, f"{path.name} defines {sorted(redefined)}; import them from csfpk._kernels.codes"


def test_kernels_return_only_known_status_names():
    """Every upper-case name a kernel function returns (alone or first in a tuple) is a status code."""
    allowed = set(codes.STATUSES) | {"SEGMENT_CONTINUE", "STIFFNESS_SWITCH"}
    for path in KERNELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Return) and node.value is not None:
                v = node.value.elts[0] if isinstance(node.value, ast.Tuple) and node.value.elts else node.value
                if isinstance(v, ast.Name) and v.id.isupper() and len(v.id) > 2:  # not a matrix E, P
                    assert v.id in allowed, f"{path.name}:{node.lineno} returns {v.id}"
                assert not (isinstance(v, ast.Constant) and isinstance(v.value, int) and not isinstance(v.value, bool)
                            and isinstance(node.value, ast.Tuple)), f"{path.name}:{node.lineno} returns a magic number"
