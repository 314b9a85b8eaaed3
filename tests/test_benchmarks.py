"""The benchmark harness (issue 6): record schema, ratios, accuracy of the exact path.

Runs a tiny benchmark in-process (two population sizes, one repeat, cheap tools, no
fresh-process compile probes). Speed is never asserted here.
"""

import argparse
import json
import math

import pytest

pytest.importorskip("scipy")

from benchmarks import harness
from benchmarks.cli import add_bench_parser

TINY_TOOLS = ["csfpk-exact", "scipy-LSODA", "scipy-odeint"]


@pytest.fixture(scope="module")
def tiny():
    records, notes = harness.run(quick=True, workloads=["tki", "it"], tools_=TINY_TOOLS, sizes=(1, 3), repeats=1,
                                 compile_probe=False, log=lambda msg: None)
    return records, notes


def test_records_have_the_schema_and_finite_numbers(tiny, tmp_path):
    records, _ = tiny
    assert records
    harness.check_records(records)
    path = tmp_path / "bench.json"
    harness.write_json(records, path)
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, list) and len(loaded) == len(records)
    for r in loaded:
        for key in harness.REQUIRED_KEYS:
            assert key in r, key
        assert isinstance(r["workload"], str) and isinstance(r["tool"], str)
        assert isinstance(r["n"], int) and r["n"] >= 1
        assert isinstance(r["extrapolated"], bool)
        for key in ("median_s", "subjects_per_s", "ratio_to_csfpk", "max_rel_err"):
            assert isinstance(r[key], float) and math.isfinite(r[key]), (r["tool"], key, r[key])
        assert r["median_s"] > 0 and r["max_rel_err"] >= 0
        assert r["subjects_per_s"] == pytest.approx(r["n"] / r["median_s"])
        if r["peak_mem_mb"] is not None:
            assert math.isfinite(r["peak_mem_mb"])
    assert {(r["workload"], r["tool"]) for r in loaded} == {(w, t) for w in ("tki", "it") for t in TINY_TOOLS}


def test_ratio_is_against_csfpk_of_the_same_workload_and_size(tiny):
    records, _ = tiny
    base = {(r["workload"], r["n"]): r["median_s"] for r in records if r["tool"] == "csfpk-exact"}
    assert set(base) == {(w, n) for w in ("tki", "it") for n in (1, 3)}
    for r in records:
        assert r["ratio_against"] == "csfpk-exact"
        assert r["ratio_to_csfpk"] == pytest.approx(r["median_s"] / base[(r["workload"], r["n"])])
        if r["tool"] == "csfpk-exact":
            assert r["ratio_to_csfpk"] == 1.0


def test_exact_path_matches_the_independent_exact_solution(tiny):
    records, _ = tiny
    exact = [r for r in records if r["tool"] == "csfpk-exact"]
    assert exact and all(not r["extrapolated"] for r in exact)
    for r in exact:
        assert r["max_rel_err"] < 1e-8, r


def test_adaptive_baselines_reach_the_stated_tolerance(tiny):
    records, _ = tiny
    for r in records:
        if r["tool"].startswith("scipy"):
            assert r["max_rel_err"] < 1e-5, r  # rtol 1e-8: far tighter than this bound


def test_ratio_uses_the_workload_reference_tool():
    recs = [{"workload": "nonlinear", "tool": t, "n": n, "median_s": s}
            for t, n, s in (("csfpk-rodas", 10, 2.0), ("csfpk-dopri5", 10, 1.0), ("scipy-LSODA", 10, 30.0),
                            ("csfpk-rodas", 100, 20.0), ("scipy-LSODA", 100, 300.0))]
    harness._add_ratios(recs, {"nonlinear": "csfpk-rodas"})
    got = {(r["tool"], r["n"]): r["ratio_to_csfpk"] for r in recs}
    assert got == {("csfpk-rodas", 10): 1.0, ("csfpk-dopri5", 10): 0.5, ("scipy-LSODA", 10): 15.0,
                   ("csfpk-rodas", 100): 1.0, ("scipy-LSODA", 100): 15.0}


def test_check_records_rejects_nan_and_missing_keys():
    good = {"workload": "tki", "tool": "x", "n": 1, "median_s": 1.0, "subjects_per_s": 1.0, "ratio_to_csfpk": 1.0,
            "max_rel_err": 0.0, "extrapolated": False}
    harness.check_records([good])
    with pytest.raises(ValueError, match="max_rel_err"):
        harness.check_records([dict(good, max_rel_err=float("nan"))])
    with pytest.raises(ValueError, match="median_s"):
        harness.check_records([{k: v for k, v in good.items() if k != "median_s"}])


def test_markdown_report_lists_every_record(tiny):
    records, notes = tiny
    text = harness.markdown(records, notes)
    assert text.count("| csfpk-exact |") == 4
    assert "## tki" in text and "## it" in text


def test_bench_subcommand_parses():
    parser = argparse.ArgumentParser(prog="csfpk")
    sub = parser.add_subparsers(dest="command")
    add_bench_parser(sub)
    args = parser.parse_args(["bench", "--quick", "--json", "out.json", "--md", "out.md", "--workloads", "tki", "it"])
    assert args.quick and args.json == "out.json" and args.md == "out.md" and args.workloads == ["tki", "it"]
    assert callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--workloads", "nope"])
