"""Run-folder integrity (issue 9): every defect a reliability probe found ends in a clean one-line
refusal or an exact resume, never in silently wrong rows.

Interruptions are made deterministic with the runner's test hooks (``csfpk.runfolder``):
``CSFPK_TEST_STOP_AFTER_CHUNKS=N`` SIGKILLs the process after its Nth finished chunk and
``CSFPK_TEST_PAUSE_IN_CHUNK=N`` parks it while its Nth chunk is still a temporary file.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import csfpk
from conftest import cli, cli_killed_after
from csfpk import runfolder
from csfpk.batch import run
from csfpk.runfolder import RunFolderError, RunWriter
from csfpk.scenario import Scenario, digest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = """
schema = "csfpk.sweep/1"
name = "folder"
t_end = "7d"
[populations.default]
n = {n}
seed = 11
penetration = "range"
[regimens.qd]
amt = 80
ii = "24h"
source = "test"
[regimens.hi]
amt = 160
ii = "24h"
source = "test"
[[grid]]
drugs = ["osimertinib"]
regimens = ["qd", "hi"]
"""


def scenarios(n=30, labels=("80 qd", "160 qd"), seed=5):
    drug = csfpk.load_drug("osimertinib")
    pop = csfpk.Population(n=n, seed=seed, penetration="range")
    return [Scenario(drug, csfpk.Regimen.every(amt=80 * (k + 1), ii=24, n=7), pop, t_end=168.0, regimen_name=label)
            for k, label in enumerate(labels)]


def finished(tmp_path, name="run", **kw):
    out = tmp_path / name
    run(scenarios(**kw), out, chunk=10, progress=False)
    return out


def chunk_files(out, kind="metrics"):
    return sorted(str(p) for p in out.glob(f"scenarios/*/{kind}-*"))


def set_status(out, status):
    man = json.loads((out / "manifest.json").read_text())
    man["status"] = status
    (out / "manifest.json").write_text(json.dumps(man))
    return man


def one_line_error(r, message):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def rows(out):
    res = csfpk.load_run(out)
    return res.metrics.sort_values(["regimen", "subject"]).reset_index(drop=True)


# ----------------------------------------------------------------------------- scenario ids
def test_labels_that_share_a_slug_get_their_own_folders(tmp_path):
    out = tmp_path / "run"
    res = run(scenarios(labels=("150 mg/qd", "150 mg qd")), out, chunk=10, progress=False)
    keys = [r["key"] for r in res.scenarios]
    assert len(set(keys)) == 2 and all(os.path.isdir(out / "scenarios" / k) for k in keys)
    got = csfpk.load_run(out)
    a, b = (got.scenario_metrics(r["id"]) for r in got.scenarios)
    # the two regimens are 80 and 160 mg: had one overwritten the other, the ratio would be 1
    np.testing.assert_allclose(b.plasma_auc_ss / a.plasma_auc_ss, 2.0, rtol=1e-9)


def test_duplicate_scenario_ids_are_refused(tmp_path):
    with pytest.raises(csfpk.ParameterError, match="scenario labels repeat"):
        run(scenarios(labels=("80 qd", "80 qd")), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- one writer
def test_a_second_writer_is_refused_while_the_lock_is_held(tmp_path):
    out = tmp_path / "run"
    recs = [s.record() for s in scenarios()]
    writer = RunWriter.open(out, spec=None, spec_hash=digest(recs), scenarios=recs, chunk=10, default_chunk=10,
                            curves=False, overwrite=False)
    try:
        with pytest.raises(RunFolderError, match="being written by another csfpk process"):
            run(scenarios(), out, chunk=10, progress=False)
        with pytest.raises(RunFolderError, match="being written by another csfpk process"):
            run(scenarios(n=31), out, overwrite=True, progress=False)  # another spec may not slip in either
    finally:
        writer.close()
    run(scenarios(), out, chunk=10, progress=False)  # the lock is free: the run resumes and finishes
    assert len(rows(out)) == 60


# ----------------------------------------------------------------------------- changed chunks
def test_a_swapped_chunk_is_refused_on_read_and_on_resume(tmp_path):
    out = finished(tmp_path)
    m0, m1 = chunk_files(out)[:2]
    shutil.copy(m1, m0)
    with pytest.raises(RunFolderError, match=r"chunk 0 of scenario .*metrics-000000.parquet does not match"):
        csfpk.load_run(out)
    set_status(out, "running")
    with pytest.raises(RunFolderError, match="chunk 0 of scenario"):
        run(scenarios(), out, progress=False)
    # the chunk's record copied along with it: the subject range gives it away
    s0, s1 = chunk_files(out, "chunk")[:2]
    shutil.copy(s1, s0)
    with pytest.raises(RunFolderError, match="holds subjects 10..20 where 0..10 belong"):
        run(scenarios(), out, progress=False)


def test_a_flipped_byte_is_refused(tmp_path):
    out = finished(tmp_path)
    before = rows(out)
    key = csfpk.load_run(out).record("osimertinib / 160 qd / population")["key"]
    path = out / "scenarios" / key / "metrics-000002.parquet"
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.raises(RunFolderError, match="chunk 2 of scenario 'osimertinib / 160 qd / population': metrics-000002.parquet does not match its checksum"):
        csfpk.load_run(out)
    r = cli("plot", str(out))
    one_line_error(r, "does not match its checksum")
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    pd.testing.assert_frame_equal(rows(out), before)


def test_an_edited_chunk_size_is_refused(tmp_path):
    out = finished(tmp_path)
    man = json.loads((out / "manifest.json").read_text())
    man["chunk"] = 5
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(RunFolderError, match="do not match its hashes"):
        csfpk.load_run(out)
    set_status(out, "running")
    with pytest.raises(RunFolderError, match="chunk = 5 does not match the manifest's run hash"):
        run(scenarios(), out, progress=False)


# ----------------------------------------------------------------------------- order, temporaries
def test_the_manifest_is_completed_last(tmp_path, monkeypatch):
    seen = {}
    complete = RunWriter.complete

    def spy(self):
        seen["status"] = json.loads(open(os.path.join(self.path, "manifest.json")).read())["status"]
        seen["files"] = sorted(os.listdir(self.path))
        complete(self)

    monkeypatch.setattr(RunWriter, "complete", spy)
    out = finished(tmp_path)
    assert seen["status"] == "running" and {"summary.csv", "summary.png"} <= set(seen["files"])
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and set(man["files"]) == {"summary.csv", "summary.png"}


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_kill_during_manifest_creation_leaves_a_usable_folder(tmp_path, overwrite):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / ".manifest-k2j_8xq.json").write_text('{"schema": "csfp')  # the temporary a kill left behind
    res = run(scenarios(), out, chunk=10, overwrite=overwrite, progress=False)
    assert len(res.metrics) == 60
    assert not [f for f in os.listdir(out) if f.startswith(".manifest-")]


def test_stale_temporaries_are_cleaned_on_resume(tmp_path):
    out = finished(tmp_path)
    set_status(out, "running")
    key = next(iter(os.listdir(out / "scenarios")))
    stale = [out / ".summary-3kq9_z.csv", out / "scenarios" / key / ".metrics-000001-ab12cd.parquet"]
    for p in stale:
        p.write_text("half")
    (out / ".my-notes").write_text("a user's hidden file is not a csfpk temporary")
    run(scenarios(), out, progress=False)
    assert not any(p.exists() for p in stale) and (out / ".my-notes").exists()


# ----------------------------------------------------------------------------- readers
def test_readers_refuse_foreign_or_edited_folders(tmp_path):
    out = finished(tmp_path)
    man = json.loads((out / "manifest.json").read_text())
    bad = dict(man, scenarios=[dict(man["scenarios"][0], key="/etc")] + man["scenarios"][1:])
    bad["spec_hash"] = digest(bad["scenarios"])
    bad["run_hash"] = runfolder.run_hash(bad)
    (out / "manifest.json").write_text(json.dumps(bad))
    with pytest.raises(RunFolderError, match="scenario key '/etc' does not name its record"):
        csfpk.load_run(out)
    (out / "manifest.json").write_text(json.dumps(man))
    csv = (out / "summary.csv").read_text()
    (out / "summary.csv").write_text(csv.replace("osimertinib", "erlotinib"))
    with pytest.raises(RunFolderError, match="summary.csv is missing or changed"):
        csfpk.load_run(out)
    (out / "summary.csv").write_text(csv)
    other = finished(tmp_path, "other", seed=6)  # foreign rows: another run's chunk with its record
    key = man["scenarios"][0]["key"]
    okey = json.loads((other / "manifest.json").read_text())["scenarios"][0]["key"]
    for name in ("metrics-000000.parquet", "chunk-000000.json"):
        shutil.copy(other / "scenarios" / okey / name, out / "scenarios" / key / name)
    with pytest.raises(RunFolderError, match="chunk 0 of scenario .* belongs to another run"):
        csfpk.load_run(out)


# ----------------------------------------------------------------------------- overwrite
def test_overwrite_builds_beside_keeps_user_files_and_survives_a_kill(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(n=30))
    out = tmp_path / "run"
    assert cli("compare", str(sweep), "--out", str(out), "--chunk", "10").returncode == 0
    before = rows(out)
    (out / "figures").mkdir()
    (out / "figures" / "mine.svg").write_text("<svg/>")
    (out / "notes.txt").write_text("ward 3 cohort")
    sweep.write_text(SWEEP.format(n=40))
    cli_killed_after(2, "compare", str(sweep), "--out", str(out), "--chunk", "10", "--overwrite")
    pd.testing.assert_frame_equal(rows(out), before)  # the old run is intact and still verifies
    assert [p for p in os.listdir(tmp_path) if ".csfpk-new-" in p]
    r = cli("compare", str(sweep), "--out", str(out), "--chunk", "10", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert len(rows(out)) == 80
    assert (out / "figures" / "mine.svg").read_text() == "<svg/>" and (out / "notes.txt").exists()
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith(".")) == []  # build and old folders gone


# ----------------------------------------------------------------------------- kill and resume
def test_stop_after_n_chunks_then_resume_gives_the_rows_of_an_uninterrupted_run(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(n=50))
    args = ["compare", str(sweep), "--chunk", "10"]
    killed = tmp_path / "killed"
    cli_killed_after(3, *args, "--out", str(killed))
    assert json.loads((killed / "manifest.json").read_text())["status"] == "running"
    assert len(chunk_files(killed, "chunk")) == 3
    r = cli(*args, "--out", str(killed))
    assert r.returncode == 0, r.stderr
    fresh = tmp_path / "fresh"
    csfpk.run_sweep(str(sweep), fresh, chunk=10, progress=False)
    a, b = rows(killed), rows(fresh)
    assert len(a) == 100 and not a.duplicated(["regimen", "subject"]).any()
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # the resumed summary: chunks of the first session read back, the others from memory
    pd.testing.assert_frame_equal(pd.read_csv(killed / "summary.csv"), pd.read_csv(fresh / "summary.csv"),
                                  check_exact=True)


def test_sigkill_mid_chunk_a_resume_meanwhile_refuses_and_leaves_the_live_file(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(n=50))
    args = ["compare", str(sweep), "--chunk", "10"]
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=ROOT, **{runfolder.PAUSE_IN_CHUNK: "4"})
    proc = subprocess.Popen([sys.executable, "-m", "csfpk", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # blocks until the hook parks the process inside chunk 4
        assert "paused in chunk 4" in line, line
        live = [p for p in out.rglob(".metrics-*")]
        assert len(live) == 1
        r = cli(*args, "--out", str(out))
        one_line_error(r, "is being written by another csfpk process")
        assert live[0].exists()  # the refused resume did not touch the live writer's temporary
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    r = cli(*args, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert not live[0].exists()
    fresh = tmp_path / "fresh"
    csfpk.run_sweep(str(sweep), fresh, chunk=10, progress=False)
    pd.testing.assert_frame_equal(rows(out), rows(fresh), check_exact=True)


# ----------------------------------------------------------------------------- command line
def test_rerun_of_a_finished_run_prints_its_summary(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(n=20))
    out = tmp_path / "run"
    first = cli("compare", str(sweep), "--out", str(out))
    again = cli("compare", str(sweep), "--out", str(out))
    assert again.returncode == 0 and "already finished" in again.stdout
    assert first.stdout.splitlines()[:3] == again.stdout.splitlines()[:3]


def test_bad_scheduler_is_one_line_and_leaves_no_folder(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(n=20))
    r = cli("compare", str(sweep), "--out", str(tmp_path / "run"), "--scheduler", "foo")
    one_line_error(r, "scheduler = 'foo' is not allowed")
    assert not (tmp_path / "run").exists()


def test_sigterm_keeps_a_resumable_folder_and_says_how_to_resume(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(n=50))
    args = ["compare", str(sweep), "--chunk", "10", "--out", str(tmp_path / "run")]
    env = dict(os.environ, PYTHONPATH=ROOT, **{runfolder.PAUSE_IN_CHUNK: "3"})
    proc = subprocess.Popen([sys.executable, "-m", "csfpk", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert "paused in chunk 3" in proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read().strip().splitlines()
    assert proc.wait() == 130
    assert len(err) == 1 and err[0].endswith("resume with: csfpk " + " ".join(args)), err
    out = tmp_path / "run"
    assert not list(out.rglob(".metrics-*")) and len(chunk_files(out, "chunk")) == 2
    assert cli(*args).returncode == 0
    fresh = tmp_path / "fresh"
    csfpk.run_sweep(str(sweep), fresh, chunk=10, progress=False)
    pd.testing.assert_frame_equal(rows(out), rows(fresh), check_exact=True)


def test_unwritable_output_folders_are_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    sweep = tmp_path / "s.toml"
    sweep.write_text(SWEEP.format(n=20))
    one_line_error(cli("compare", str(sweep), "--out", str(blocker / "run")), "cannot be written")
    out = finished(tmp_path)
    one_line_error(cli("plot", str(out), "--out", str(blocker / "figs")), "cannot be written")


def test_a_run_folder_describes_itself(tmp_path, monkeypatch):
    """csfpk plot and load_run need no parameter file: molecular weights and targets come from the manifest."""
    out = finished(tmp_path)
    monkeypatch.setenv("CSFPK_PARAMS", str(tmp_path / "no_params_here"))
    with pytest.raises(csfpk.ParameterError, match="no_params_here"):
        csfpk.load_drug("osimertinib")
    res = csfpk.load_run(out)
    assert res.molecular_weight("osimertinib") == res.scenarios[0]["drug"]["molecular_weight"] > 0
    assert res.scenarios[0]["regimen"][0]["amt"] == 80 and res.scenarios[1]["regimen"][0]["amt"] == 160
    fig = csfpk.plot.comparison(res, "csf_trough")
    assert "target" in fig.axes[0].get_title(loc="right")
    r = cli("plot", str(out), env={"CSFPK_PARAMS": str(tmp_path / "no_params_here")})
    assert r.returncode == 0 and "wrote 4 figures" in r.stdout, r.stderr
