"""Escalation over virtual patients (issue 11): the batch kernel equals run_escalation subject by subject,
does not depend on threads or chunks, keeps failures per subject, scales per-kg doses, and the marrow IIV."""

import math
from dataclasses import replace
from types import MappingProxyType

import numpy as np
import pandas as pd_
import pytest

import csfpk
from csfpk.errors import ParameterError
from csfpk.escalation import Escalation, run_escalation
from csfpk.escalation_population import run_escalation_population, run_escalation_subjects
from csfpk.myelosuppression import load_myelosuppression
from csfpk.physiology import load_physiology
from csfpk.population import Population, marrow_parameters, subject_inputs

DRUG = csfpk.load_drug("pemetrexed")
ESC = Escalation.seed_pemetrexed(weeks=12)
DT = 1.0
# a sensitive marrow (slope ×40 the file's 0.87 L/mg) so that grade >= 3 episodes and step-backs occur
PD = load_myelosuppression()
PD_SENSITIVE = type(PD)(PD.lineages, MappingProxyType({"pemetrexed": 35.0}), PD.quantities, PD.iiv)
POP = Population(n=6, seed=11)


def _single(params, marrow, i, esc=ESC, pd=PD_SENSITIVE):
    """run_escalation with subject i's PK, CSF physiology and marrow parameters (the single-patient reference)."""
    drug_i, phys_i = subject_inputs(DRUG, load_physiology("adult"), params, i)
    lins = {n: replace(pd.lineages[n], circ0=float(marrow["circ0"][i, j]), mtt=float(marrow["mtt"][i, j]))
            for j, n in enumerate(marrow["lineages"])}
    pd_i = type(pd)(MappingProxyType(lins), MappingProxyType({"pemetrexed": float(marrow["slope"][i])}), pd.quantities)
    return run_escalation(drug_i, esc, dt=DT, pd=pd_i, physiology=phys_i)


@pytest.fixture(scope="module")
def population_run():
    params = POP.sample(DRUG)
    marrow = marrow_parameters(PD_SENSITIVE, "pemetrexed", POP.seed, params["subject"])
    res = run_escalation_subjects(DRUG, ESC, params, marrow, dt=DT, pd=PD_SENSITIVE)
    return params, marrow, res


def test_batch_escalation_equals_run_escalation_subject_by_subject(population_run):
    params, marrow, res = population_run
    assert (res.subjects.status == 0).all()
    # the subjects differ and the rule is exercised: several final levels, some step-backs
    assert np.ptp(params["CL"]) > 0 and np.ptp(marrow["slope"]) > 0
    assert res.subjects.n_step_backs.sum() >= 2
    for i in range(POP.n):
        er = _single(params, marrow, i)
        mine = res.doses[res.doses.subject == i]
        np.testing.assert_array_equal(mine.dose_mg.to_numpy(), er.doses_given)
        assert mine.action.tolist() == er.decisions.action.tolist()
        row = res.subjects.iloc[i]
        assert row.n_step_backs == int((er.decisions.action == "step_back").sum())
        for lin in res.lineages:
            c = er.counts[er.counts.lineage == lin]
            k = int(np.argmin(c.count_1e9_L.to_numpy()))
            assert row[f"nadir_{lin}_1e9_L"] == pytest.approx(c.count_1e9_L.iloc[k], rel=1e-9)
            assert row[f"nadir_time_{lin}_h"] == c.time_h.iloc[k]
            assert row[f"worst_grade_{lin}"] == c.grade.max()


def test_step_back_is_one_level_after_a_new_grade3_episode(population_run):
    _, _, res = population_run
    d = res.doses
    for _, g in d.groupby("subject"):
        doses, acts = g.dose_mg.to_numpy(), g.action.to_numpy()
        step = np.diff(doses)
        back = acts[1:] == "step_back"
        np.testing.assert_array_equal(doses[1:][back], np.maximum(doses[:-1][back] - ESC.step, ESC.start))
        assert np.all(step[acts[1:] == "escalate"] == ESC.step)
        assert np.all(step[np.isin(acts[1:], ["hold", "at_cap"])] == 0)
        assert doses.max() <= ESC.cap and doses.min() >= ESC.start


def test_same_numbers_for_threads_and_chunk_sizes(population_run):
    params, marrow, ref = population_run
    import numba

    for threads, chunk in ((1, 1), (min(2, numba.config.NUMBA_NUM_THREADS), 4)):
        res = run_escalation_subjects(DRUG, ESC, params, marrow, dt=DT, pd=PD_SENSITIVE, threads=threads,
                                      chunk_size=chunk)
        pd_.testing.assert_frame_equal(res.subjects, ref.subjects, check_exact=True)
        pd_.testing.assert_frame_equal(res.doses, ref.doses, check_exact=True)


def test_subject_draws_do_not_depend_on_population_size():
    small = run_escalation_population(DRUG, ESC, Population(n=3, seed=11), dt=DT, pd=PD_SENSITIVE)
    big = run_escalation_population(DRUG, ESC, Population(n=5, seed=11), dt=DT, pd=PD_SENSITIVE)
    pd_.testing.assert_frame_equal(small.subjects, big.subjects.iloc[:3], check_exact=True)


@pytest.mark.parametrize("where", ["CL", "slope"])
def test_nan_subject_loses_only_its_row(population_run, where):
    params, marrow, ref = population_run
    params = {k: v.copy() for k, v in params.items()}
    marrow = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in marrow.items()}
    (params if where == "CL" else marrow)[where][2] = np.nan
    res = run_escalation_subjects(DRUG, ESC, params, marrow, dt=DT, pd=PD_SENSITIVE)
    bad = res.subjects.iloc[2]
    assert bad.status != 0 and where in bad.message and "nan" in bad.message
    assert math.isnan(bad.final_dose_mg) and math.isnan(bad.nadir_leukocytes_1e9_L)
    assert (res.doses[res.doses.subject == 2].action == "failed").all()
    keep = res.subjects.subject != 2
    pd_.testing.assert_frame_equal(res.subjects[keep], ref.subjects[keep], check_exact=True)
    assert res.summary()["n_failed"] == 1 and res.summary()["n_ok"] == POP.n - 1


def test_nonfinite_state_inside_the_kernel_is_reported():
    params = POP.sample(DRUG)
    marrow = marrow_parameters(PD_SENSITIVE, "pemetrexed", POP.seed, params["subject"])
    marrow["slope"][1] = np.inf  # passes no parameter check of a count; the kernel must catch it
    res = run_escalation_subjects(DRUG, ESC, params, marrow, dt=DT, pd=PD_SENSITIVE)
    assert res.subjects.status.tolist()[:3] == [0, 2, 0]


def test_per_kg_doses_differ_by_subject_and_match_a_scaled_single_run():
    esc = Escalation(times=ESC.times, start=0.2, step=0.1, cap=0.6)  # mg/kg
    weights = np.array([45.0, 70.0, 95.0])
    pop = Population(n=3, seed=5)
    res = run_escalation_population(DRUG, esc, pop, dt=DT, pd=PD_SENSITIVE, dose_basis="weight", weight_kg=weights)
    first = res.doses[res.doses.injection == 1].dose_mg.to_numpy()
    np.testing.assert_allclose(first, 0.2 * weights, rtol=1e-15)
    params = pop.sample(DRUG)
    marrow = marrow_parameters(PD_SENSITIVE, "pemetrexed", pop.seed, params["subject"])
    for i in (0, 2):
        w = weights[i]
        er = _single(params, marrow, i, esc=Escalation(times=esc.times, start=0.2 * w, step=0.1 * w, cap=0.6 * w))
        np.testing.assert_allclose(res.doses[res.doses.subject == i].dose_mg.to_numpy(), er.doses_given, rtol=1e-12)


def test_per_m2_doses_use_population_bsa_covariate():
    esc = Escalation(times=ESC.times[:3], start=5, step=2, cap=9)  # mg/m2
    pop = Population(n=4, seed=2, covariates={"bsa": (1.8, 0.1)})
    res = run_escalation_population(DRUG, esc, pop, dt=DT, dose_basis="bsa")
    bsa = pop.sample(DRUG)["bsa_m2"]
    assert np.ptp(bsa) > 0
    np.testing.assert_allclose(res.doses[res.doses.injection == 1].dose_mg.to_numpy(), 5 * bsa, rtol=1e-15)
    np.testing.assert_allclose(res.subjects.bsa_m2.to_numpy(), bsa)


def test_bad_input_names_the_field():
    with pytest.raises(ParameterError, match=r"dose_basis = 'kg' is not allowed"):
        run_escalation_population(DRUG, ESC, POP, dose_basis="kg")
    with pytest.raises(ParameterError, match=r"weight_kg has shape \(2,\); expected \(6,\)"):
        run_escalation_population(DRUG, ESC, POP, dose_basis="weight", weight_kg=[70.0, 80.0])
    with pytest.raises(ParameterError, match=r"needs a linear model"):
        run_escalation_population(csfpk.load_drug("lorlatinib"), Escalation(times=(0.0, 24.0), route="oral"), POP)


# ---------------------------------------------------------------- marrow IIV
def test_marrow_iiv_is_lognormal_with_the_file_cvs_and_shared_across_lineages():
    n = 20000
    m = marrow_parameters(PD, "pemetrexed", 7, np.arange(n))
    names = m["lineages"]
    for j, lin in enumerate(names):
        for key, col in (("Circ0", m["circ0"][:, j]), ("MTT", m["mtt"][:, j])):
            omega = math.sqrt(math.log1p(PD.iiv[lin][key] ** 2))
            assert np.std(np.log(col)) == pytest.approx(omega, rel=0.03)
    assert np.std(np.log(m["slope"])) == pytest.approx(math.sqrt(math.log1p(PD.iiv["slope"] ** 2)), rel=0.03)
    assert np.median(m["slope"]) == pytest.approx(PD.slope("pemetrexed"), rel=0.03)
    # one marrow per patient: neutrophil baseline always below the leukocyte one
    assert np.all(m["circ0"][:, names.index("neutrophils")] < m["circ0"][:, names.index("leukocytes")])
    off = marrow_parameters(PD, "pemetrexed", 7, np.arange(5), iiv=False)
    assert np.all(off["slope"] == PD.slope("pemetrexed"))


def test_pd_file_iiv_errors_name_the_field(tmp_path):
    from csfpk.paths import params_dir

    text = (params_dir() / "pd" / "myelosuppression.toml").read_text()
    bad = tmp_path / "myelosuppression.toml"
    bad.write_text(text.replace("[iiv.platelets]", "[iiv.platelet]"))
    with pytest.raises(ParameterError, match=r"\[iiv\]: unknown key\(s\) \['platelet'\]"):
        load_myelosuppression(bad)
    bad.write_text(text.replace('MTT   = { value = 47.1, unit = "%CV"', 'MTT   = { value = -1, unit = "%CV"'))
    with pytest.raises(ParameterError, match=r"\[iiv.platelets\]: MTT.value = -1 is not allowed"):
        load_myelosuppression(bad)


def test_kernel_compiles_once_whatever_the_input_types(population_run):
    from csfpk._kernels import escalation as kernel

    params, marrow, _ = population_run
    lists = {k: [float(x) for x in v] for k, v in params.items() if k != "subject"}
    lists["subject"] = list(range(POP.n))
    run_escalation_subjects(DRUG, ESC, {k: np.asarray(v) for k, v in lists.items()}, marrow, dt=DT, pd=PD_SENSITIVE,
                            chunk_size=np.int32(2), substeps=np.int64(4))
    assert len(kernel.run_batch.signatures) == 1
