import numpy as np
import pytest

from csfpk.drug import Drug, PlasmaPK
from csfpk.model import build_model


def plasma_model(**pk):
    """A plasma-only model (no CSF) with the given PlasmaPK parameters."""
    return build_model(Drug("test", 300.0, PlasmaPK(**pk)), csf_layout="none")


@pytest.fixture
def rel_err():
    def f(a, b, floor=1e-300):
        a, b = np.asarray(a, float), np.asarray(b, float)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))
    return f
