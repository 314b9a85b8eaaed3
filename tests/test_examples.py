"""Every example script runs in a fresh folder with small inputs and writes its table and figures (issue 5)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = {
    "high_dose_tki.py": (["--n", "20", "--out", "run"],
                         ["run/summary.csv", "run/summary.png", "run/manifest.json"]),
    "intrathecal_protocol.py": (["--weeks", "4", "--out", "it"],
                                ["it/exposure.csv", "it/doses_given.csv", "it/csf_by_region.png", "it/leukocytes.png"]),
    "route_comparison.py": (["--out", "routes"], ["routes/route_exposure.csv", "routes/routes_csf.png"]),
    "tki_calibration.py": (["--out", "tki"], ["tki/fold_errors.csv", "tki/dose_exposure_erlotinib.png",
                                              "tki/dose_exposure_gefitinib.png", "tki/dose_exposure_osimertinib.png"]),
    "escalation_population.py": (["--n", "8", "--dt", "1", "--out", "esc"],
                                 ["esc/grade3_shares.csv", "esc/final_dose_levels.csv", "esc/doses_given.csv",
                                  "esc/escalation_population.png"]),
    "it_validation.py": (["--out", "itv"], ["itv/validation.csv", "itv/validation.png"]),
    "it_escalation.py": (["--n", "4", "--out", "ite"], ["ite/grade3_vs_seed.csv", "ite/grade3_vs_seed.png",
                                                       "ite/summary.png", "ite/manifest.json"]),
}


def test_every_example_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(CASES)


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_writes_its_outputs(script, tmp_path):
    args, outputs = CASES[script]
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote" in proc.stdout
    for rel in outputs:
        path = tmp_path / rel
        assert path.is_file(), f"{script} did not write {rel}"
        assert path.stat().st_size > (5000 if rel.endswith(".png") else 50), f"{rel} is (nearly) empty"


def test_examples_import_only_public_names():
    """Examples are what users copy: they use ``csfpk.<name>`` and ``from csfpk import <public name>``,
    never a module path such as ``csfpk.escalation_population`` (issue 9)."""
    import ast

    import csfpk

    bad = []
    for script in sorted(EXAMPLES.glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("csfpk"):
                if node.module != "csfpk":
                    bad.append(f"{script.name}: from {node.module} import ...")
                bad += [f"{script.name}: {a.name}" for a in node.names if a.name not in csfpk.__all__]
            elif isinstance(node, ast.Import):
                bad += [f"{script.name}: import {a.name}" for a in node.names if a.name.startswith("csfpk.")]
    assert bad == []


def test_tki_example_beside_the_readme_main_job(tmp_path):
    """Issue 14: the example after the README's command used the same folder and ended in a traceback.
    Its default folder is now its own; a folder holding another run is one line and exit 2."""
    env = dict(os.environ, MPLBACKEND="Agg")
    main_job = tmp_path / "runs" / "high_dose_tki"
    main_job.mkdir(parents=True)
    (main_job / "keep.txt").write_text("the main job's folder is not touched")
    ok = subprocess.run([sys.executable, str(EXAMPLES / "high_dose_tki.py"), "--n", "5"], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "runs" / "high_dose_tki_example" / "manifest.json").is_file()
    assert sorted(p.name for p in main_job.iterdir()) == ["keep.txt"]
    other = subprocess.run([sys.executable, str(EXAMPLES / "high_dose_tki.py"), "--n", "6"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert other.returncode == 2
    assert "Traceback" not in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert "holds a different run" in other.stderr
