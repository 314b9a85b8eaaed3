"""Populations: log-normal IIV, covariates, penetration ranges, draws fixed by (seed, subject index)."""

import dataclasses
import math

import numpy as np
import pytest

import csfpk
import oracles
from csfpk.drug import PlasmaPK
from csfpk.errors import ParameterError
from csfpk.physiology import load_physiology
from csfpk.population import Population, build_rate_matrices, uniforms

PHYS = load_physiology("adult")


def test_draws_depend_only_on_seed_and_subject_index():
    drug = csfpk.load_drug("osimertinib")
    pop = Population(n=1000, seed=3, penetration="range", correlations={"CL:V1": 0.4})
    whole = pop.sample(drug, 0, 1000)
    for a, b in ((0, 7), (7, 500), (500, 1000)):
        part = pop.sample(drug, a, b)
        for k in whole:
            np.testing.assert_array_equal(part[k], whole[k][a:b])
    other = Population(n=1000, seed=4).sample(drug, 0, 10)
    assert not np.allclose(other["CL"], whole["CL"][:10])


def test_iiv_is_lognormal_with_omega_from_cv():
    drug = csfpk.load_drug("osimertinib")  # CL CV 46 %
    p = Population(n=200_000, seed=1).sample(drug)
    eta = np.log(p["CL"] / drug.plasma.CL)
    omega = math.sqrt(math.log1p(drug.iiv["CL"] ** 2))
    assert abs(eta.std() - omega) < 0.01 * omega
    assert abs(eta.mean()) < 0.01
    assert abs(np.corrcoef(np.log(p["CL"]), np.log(p["V1"]))[0, 1]) < 0.01


def test_correlation_and_uniforms():
    drug = csfpk.load_drug("osimertinib")
    p = Population(n=100_000, seed=2, correlations={"CL:V1": 0.6}).sample(drug)
    assert abs(np.corrcoef(np.log(p["CL"]), np.log(p["V1"]))[0, 1] - 0.6) < 0.02
    u = uniforms(1, np.arange(100_000), "x")
    assert 0 < u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.005


def test_penetration_range_is_log_uniform_within_table1_range():
    drug = csfpk.load_drug("osimertinib")
    lo, hi = drug.csf.ratio_range
    r = Population(n=50_000, seed=1, penetration="range").sample(drug)["penetration_ratio"]
    assert lo <= r.min() and r.max() <= hi
    assert abs(np.median(r) - math.sqrt(lo * hi)) < 0.02 * math.sqrt(lo * hi)
    nominal = Population(n=10, seed=1).sample(drug)["penetration_ratio"]
    assert np.all(nominal == drug.csf.penetration_ratio)


def test_methotrexate_crcl_covariate_model():
    drug = csfpk.load_drug("methotrexate")
    pop = Population(n=5000, seed=1, iiv={"CL": 0.0}, covariates={"crcl": (100.0, 0.3)})
    p = pop.sample(drug)
    np.testing.assert_allclose(p["CL"], drug.plasma.CL + 0.0423 * (p["crcl_mL_min"] - 87.0), rtol=1e-14)


@pytest.mark.parametrize("name", ["erlotinib", "alectinib"])  # total and unbound penetration basis
def test_vectorised_rate_matrices_match_hand_written_K_per_subject(name):
    """Each subject's rate matrix (its own ka, CL, V1, Q, V2, fu and penetration ratio) equals the
    2-compartment + CSF matrix written out by hand from csfpk.model's docstring (tests/oracles.py), not
    the model's own graph. The drug's plasma model is made 2-compartment; its CSF section and range stay."""
    base = csfpk.load_drug(name)
    drug = dataclasses.replace(base, plasma=PlasmaPK(ka=0.9, CL=5.0, V1=60.0, Q=8.0, V2=150.0, fu=0.2))
    basis, t_half = drug.csf.basis, drug.csf.equilibration_half_life
    pop = Population(n=100, seed=5, penetration="range",
                     iiv={"CL": 0.3, "V1": 0.2, "fu": 0.2, "Q": 0.4, "V2": 0.25, "ka": 0.5})
    p = pop.sample(drug, 40, 60, PHYS)
    Ks, _, _, _ = build_rate_matrices(drug, p, PHYS)
    assert Ks.shape == (20, 6, 6)  # depot, central, peripheral, csf, csf_drainage, eliminated
    assert np.ptp(p["CL"]) > 0 and np.ptp(p["penetration_ratio"]) > 0 and np.ptp(p["bulk_flow"]) > 0  # subjects differ
    for i in range(20):
        v, qb = p["csf_volume"][i], p["bulk_flow"][i]  # the subject's CSF (physiology [iiv])
        cl_in, cl_out = oracles.single_layout_exchange(p["penetration_ratio"][i], t_half, v, qb, p["fu"][i], basis)
        ref = oracles.two_compartment_csf_K(ka=p["ka"][i], CL=p["CL"][i], V1=p["V1"][i], Q=p["Q"][i], V2=p["V2"][i],
                                            fu=p["fu"][i], CL_in=cl_in, CL_out=cl_out, V_csf=v, Q_bulk=qb,
                                            drainage_fraction=PHYS.drainage_fraction,
                                            drainage_half_life=PHYS.drainage_half_life)
        np.testing.assert_allclose(Ks[i], ref, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("kwargs, field", [
    ({"n": -1}, "n"), ({"n": 10, "seed": -2}, "seed"), ({"n": 10, "penetration": "wide"}, "penetration"),
    ({"n": 10, "iiv": {"tlag": 0.3}}, "iiv.tlag"), ({"n": 10, "covariates": {"height": (170, 0.1)}}, "height"),
    ({"n": 10, "correlations": {"CL:V1": 1.5}}, "correlations"),
])
def test_invalid_population_names_the_field(kwargs, field):
    with pytest.raises(ParameterError, match=field):
        Population(**kwargs)


def test_million_subjects_sample_fast():
    import time

    drug = csfpk.load_drug("osimertinib")
    t = time.perf_counter()
    Population(n=1_000_000, seed=1, penetration="range").sample(drug)
    assert time.perf_counter() - t < 5.0
