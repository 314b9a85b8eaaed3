"""Drug files hold data, not prose (issue 9): molecular targets as a list, covariate models with unit and source."""

import pytest

import csfpk
from csfpk.population import Population

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_molecular_targets_are_a_list_of_names():
    assert csfpk.load_drug("afatinib").molecular_targets == ("EGFR", "HER2", "HER4")
    assert all(isinstance(csfpk.load_drug(d).molecular_targets, tuple) for d in csfpk.list_drugs())


def test_the_methotrexate_covariate_model_comes_from_its_file(tmp_path):
    drug = csfpk.load_drug("methotrexate")
    assert drug.covariate_model["CL"] == ("crcl", 0.0423, 87.0)
    assert drug.quantities["covariates.CL.slope"].source.startswith("Joerger2006")
    # edit the file's slope: the population follows the file, not a number in the code
    text = (ROOT / "params" / "drugs" / "methotrexate.toml").read_text()
    edited = tmp_path / "methotrexate.toml"
    edited.write_text(text.replace("value = 0.0423", "value = 0.05"))
    other = csfpk.load_drug(str(edited))
    p = Population(n=50, seed=1, iiv={"CL": 0.0}, covariates={"crcl": (100.0, 0.3)}).sample(other)
    assert p["CL"] == pytest.approx(other.plasma.CL + 0.05 * (p["crcl_mL_min"] - 87.0), rel=1e-14)


@pytest.mark.parametrize("old, new, message", [
    ('unit = "L/h per mL/min"', 'unit = "L/h"', "slope.unit = 'L/h' is not allowed; expected 'L/h per mL/min'"),
    ('covariate = "crcl"', 'covariate = "age"', "covariate = 'age' is not allowed"),
    ("[covariates.CL]", "[covariates.CLX]", "CLX names no plasma parameter"),
])
def test_bad_covariate_tables_name_the_field(tmp_path, old, new, message):
    text = (ROOT / "params" / "drugs" / "methotrexate.toml").read_text()
    path = tmp_path / "methotrexate.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(csfpk.ParameterError, match=message):
        csfpk.load_drug(str(path))
