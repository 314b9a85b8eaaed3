"""Batch runner: identical numbers across threads, chunk sizes and Dask; per-subject failures; run folders
(their integrity: tests/test_runfolder.py)."""

import json

import numpy as np
import pandas as pd
import pytest

import csfpk
from csfpk.batch import run
from csfpk.runfolder import RunFolderError
from csfpk.scenario import Scenario


def scenarios(n=300):
    drug = csfpk.load_drug("osimertinib")
    pop = csfpk.Population(n=n, seed=5, penetration="range", covariates={"bsa": (1.8, 0.1)})
    return [Scenario(drug, csfpk.Regimen.every(amt=80, ii=24, n=14), pop, t_end=336.0, regimen_name="80 qd"),
            Scenario(drug, csfpk.Regimen.every(amt="40 mg/m2", ii=24, n=14, bsa_m2=1.8), pop, t_end=336.0,
                     regimen_name="40 mg/m2 qd", dose_basis="bsa")]


def frame_of(res):
    return res.metrics.sort_values(["regimen", "subject"]).reset_index(drop=True)


def test_same_numbers_for_threads_and_chunk_sizes(one_thread):
    ref = frame_of(run(scenarios(), chunk=1000, progress=False))
    with one_thread():
        one = frame_of(run(scenarios(), chunk=77, progress=False))
    pd.testing.assert_frame_equal(ref, one, check_exact=True)
    assert (ref.status == 0).all() and len(ref) == 600


def test_chunks_run_on_the_callers_thread_count_and_are_stored_in_order(one_thread, monkeypatch, tmp_path):
    import numba

    from csfpk import batch
    from csfpk.threads import BLOCK

    seen, order = [], []
    real_threads, real_store = batch.on_threads, batch.RunWriter.write_chunk

    def spy(block, S, size=BLOCK):
        seen.append(numba.get_num_threads())
        return real_threads(block, S, size)

    def store(self, record, i, *args):
        order.append((record["key"], i))
        return real_store(self, record, i, *args)

    monkeypatch.setattr(batch, "on_threads", spy)
    monkeypatch.setattr(batch.RunWriter, "write_chunk", store)
    with one_thread():
        run(scenarios(30), tmp_path / "run", chunk=7, progress=False)
    assert len(seen) >= 10 and set(seen) == {1}  # 2 × 5 chunks simulated ahead, plus the typical subjects
    keys = sorted({k for k, _ in order}, key=[k for k, _ in order].index)
    assert order == [(k, i) for k in keys for i in range(5)]


def test_run_folder_summary_equals_the_in_memory_one(tmp_path):
    folder = run(scenarios(40), tmp_path / "run", chunk=7, progress=False).summary
    memory = run(scenarios(40), chunk=1000, progress=False).summary
    assert folder.csf_cmax_ss_median.notna().all() and (folder.n == 40).all()
    pd.testing.assert_frame_equal(folder, memory, check_exact=True)


def test_dose_per_m2_scales_with_bsa():
    df = run(scenarios(50), progress=False).metrics
    a = df[df.regimen == "80 qd"].reset_index()
    b = df[df.regimen == "40 mg/m2 qd"].reset_index()
    np.testing.assert_allclose(b.csf_auc_ss / a.csf_auc_ss, 40 * b.bsa_m2 / 80, rtol=1e-10)


def test_dask_localcluster_gives_identical_numbers(dask_client):
    ref = frame_of(run(scenarios(200), chunk=64, progress=False))
    got = frame_of(run(scenarios(200), chunk=64, client=dask_client, progress=False))
    pd.testing.assert_frame_equal(ref, got, check_exact=True)


def test_run_folder_refuses_finished_and_different_runs(tmp_path):
    out = tmp_path / "run"
    res = run(scenarios(40), out, chunk=16, progress=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["chunk"] == 16 and man["versions"]["numpy"]
    assert (out / "summary.csv").is_file() and len(res.metrics) == 80
    with pytest.raises(RunFolderError, match="--overwrite"):
        run(scenarios(40), out, progress=False)
    with pytest.raises(RunFolderError, match="different run"):
        run(scenarios(41), out, progress=False)
    again = run(scenarios(40), out, chunk=16, overwrite=True, progress=False)
    pd.testing.assert_frame_equal(frame_of(res), frame_of(again), check_exact=True)


def test_compare_api_and_curves(tmp_path):
    daily = csfpk.Regimen.every(amt=150, ii=24, n=28)
    pulse = csfpk.Regimen.every(amt=1500, ii="7d", n=4)
    cmp = csfpk.compare("erlotinib", {"150 mg qd": daily, "1500 mg qw": pulse},
                        population=csfpk.Population(n=30, seed=1, penetration="range"), t_end="28d",
                        out=tmp_path / "cmp", curves=True, progress=False, window="span")
    assert list(cmp.summary.regimen) == ["150 mg qd", "1500 mg qw"]
    assert "CSF Cavg (span) nM" in cmp.table.columns
    assert len(cmp.metrics) == 60
    cs = pd.read_csv(tmp_path / "cmp" / "curves_summary.csv")
    assert set(cs.compartment) == {"plasma", "plasma_unbound", "csf"}
    # the stored curves are each subject's concentrations in nM: a CSF curve on its 4 h grid peaks at or
    # just below the subject's exact (grid-free) CSF Cmax (wrong units, output or subject order fail here)
    rec = cmp.scenarios[1]
    cur = np.load(tmp_path / "cmp" / "scenarios" / rec["key"] / "curves-000000.npy")
    j = list(dict.fromkeys(cs[cs.scenario == rec["id"]].compartment)).index("csf")
    peak, cmax = cur[:, :, j].max(axis=1), cmp.scenario_metrics(rec["id"]).csf_cmax_span.to_numpy()
    assert np.all(peak <= cmax * (1 + 1e-6)) and np.all(peak >= 0.9 * cmax)


def test_one_failing_subject_keeps_the_others_results(bad_subjects):
    """A subject with a NaN clearance fails alone: its row is marked, the others are unchanged, the summary counts it."""
    ref = run(scenarios(40), chunk=16, progress=False)
    bad_subjects(CL={21: np.nan})
    got = run(scenarios(40), chunk=16, progress=False)
    a, b = frame_of(ref), frame_of(got)
    bad = (b.subject == 21).to_numpy()
    assert (b.status[bad] == csfpk.Status.NONFINITE).all() and (b.status[~bad] == 0).all()
    assert b.loc[bad, "csf_auc_ss"].isna().all() and b.loc[bad, "CL"].isna().all()
    pd.testing.assert_frame_equal(a[~bad].reset_index(drop=True), b[~bad].reset_index(drop=True), check_exact=True)
    assert list(got.summary.n_failed) == [1, 1] and list(got.summary.n) == [40, 40]
    assert list(got.table.failed) == ["1 of 40 (NONFINITE 1)"] * 2 and list(got.summary.failed_by_status) == ["NONFINITE 1"] * 2
    # the summary is over the 39 subjects that ran
    ok = b[~bad & (b.regimen == "80 qd")]
    assert got.summary.csf_auc_ss_median[0] == pytest.approx(np.median(ok.csf_auc_ss), rel=1e-12)
