"""csfpk._kernels.linalg (loops in place of BLAS/LAPACK) against numpy, and expm against scipy."""

import numpy as np
import pytest
import scipy.linalg as sla

from csfpk._kernels import linalg
from csfpk._kernels.expm import expm, propagators


def well_conditioned(rng, n):
    """Random n×n matrix with condition number ≲ 10 (diagonally dominated, random signs)."""
    A = rng.standard_normal((n, n))
    return A + np.diag(np.sign(rng.standard_normal(n)) * (np.abs(A).sum(1) + 1.0))


def rate_matrix(rng, n, norm):
    """Random compartmental rate matrix (non-negative off-diagonal, zero column sums), ‖K‖₁ = norm."""
    K = rng.uniform(0.0, 1.0, (n, n)) * (rng.uniform(size=(n, n)) < 0.6)
    np.fill_diagonal(K, 0.0)
    K -= np.diag(K.sum(0))
    return K * (norm / max(np.abs(K).sum(0).max(), 1e-300))


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 3, 3), (4, 7, 2), (13, 13, 13), (20, 5, 20)])
def test_matmul_matches_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    n, k, m = shape
    A, B = rng.standard_normal((n, k)), rng.standard_normal((k, m))
    C = np.full((n, m), np.nan)
    linalg.matmul(A, B, C)
    ref = A @ B
    assert np.max(np.abs(C - ref)) <= 1e-13 * np.abs(A).max() * np.abs(B).max() * k


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 16, 30])
def test_lu_solve_matches_numpy(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        A = well_conditioned(rng, n)
        b = rng.standard_normal(n)
        Bm = rng.standard_normal((n, 3))
        LU, piv = A.copy(), np.empty(n, dtype=np.int64)
        assert linalg.lu_factor(LU, piv)
        x = b.copy()
        linalg.lu_solve(LU, piv, x)
        np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-12, atol=1e-13 * np.abs(x).max())
        X = Bm.copy()
        linalg.lu_solve_matrix(LU, piv, X)
        np.testing.assert_allclose(X, np.linalg.solve(A, Bm), rtol=1e-12, atol=1e-13 * np.abs(X).max())
        assert linalg.lu_det(LU, piv) == pytest.approx(np.linalg.det(A), rel=1e-12)


def test_lu_needs_pivoting():
    A = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [4.0, -3.0, 8.0]])
    LU, piv = A.copy(), np.empty(3, dtype=np.int64)
    assert linalg.lu_factor(LU, piv)
    assert piv[0] == 2  # largest |entry| of column 0 chosen as first pivot
    b = np.array([1.0, 2.0, 3.0])
    x = b.copy()
    linalg.lu_solve(LU, piv, x)
    np.testing.assert_allclose(A @ x, b, rtol=1e-14, atol=1e-14)
    assert linalg.lu_det(LU, piv) == pytest.approx(np.linalg.det(A), rel=1e-13)


@pytest.mark.parametrize("A", [
    np.zeros((3, 3)),
    np.array([[1.0, 2.0], [2.0, 4.0]]),  # rank 1
    np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]),  # rank 2 (zero or tiny pivot)
    np.array([[1.0, 0.0], [0.0, np.nan]]),
    np.array([[np.inf, 0.0], [0.0, 1.0]]),
])
def test_singular_detected(A):
    n = A.shape[0]
    LU, piv = A.copy(), np.empty(n, dtype=np.int64)
    ok = linalg.lu_factor(LU, piv)
    # exact singularity or non-finite input: a zero/non-finite pivot; rank-deficient in rounding:
    # |det| from the pivots is at rounding level (the kernels' test is |det| < 1e-300 after ok)
    assert (not ok) or abs(linalg.lu_det(LU, piv)) < 1e-14


def test_kernel_steady_state_singular_status():
    """SS_CONST on a non-invertible dynamic block returns SINGULAR (exact.apply_action)."""
    from csfpk._kernels import exact

    K = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # state 1 has no elimination
    x, r = np.zeros(3), np.zeros(3)
    code = exact.apply_action(exact.SS_CONST, 0, 1.0, np.zeros(3), K, 2, x, r)
    assert code == exact.SINGULAR
    K[1, 1] = -0.5
    code = exact.apply_action(exact.SS_CONST, 0, 1.0, np.zeros(3), K, 2, x, r)
    assert code == exact.OK
    np.testing.assert_allclose(x[:2], np.linalg.solve(-K[:2, :2], [1.0, 0.0]), rtol=1e-14)


@pytest.mark.parametrize("n", [1, 2, 4, 7, 12])
@pytest.mark.parametrize("norm", [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3])
def test_expm_matches_scipy_on_rate_matrices(n, norm):
    rng = np.random.default_rng(int(1000 * n + np.log10(norm) * 7 + 50))
    for _ in range(5):
        K = rate_matrix(rng, n, norm)
        E = expm(K)
        ref = sla.expm(K)
        # entries of exp(K) of a rate matrix lie in [0, 1]: compare normwise
        assert np.max(np.abs(E - ref)) <= 1e-12 * max(1.0, np.abs(ref).max())
        assert np.max(np.abs(E.sum(0) - 1.0)) <= 1e-12  # zero column sums: mass conserved


def test_expm_general_and_propagators():
    rng = np.random.default_rng(3)
    for n in (3, 6):
        A = rng.standard_normal((n, n))
        np.testing.assert_allclose(expm(A), sla.expm(A), rtol=1e-12, atol=1e-13 * np.abs(sla.expm(A)).max())
        K = rate_matrix(rng, n, 2.0)
        h = 3.7
        E, P = propagators(K, h)
        M = np.zeros((2 * n, 2 * n))
        M[:n, :n], M[:n, n:] = K * h, np.eye(n) * h
        X = sla.expm(M)
        np.testing.assert_allclose(E, X[:n, :n], rtol=0, atol=1e-13)
        np.testing.assert_allclose(P, X[:n, n:], rtol=0, atol=1e-12 * h)
    Z = expm(np.zeros((4, 4)))
    np.testing.assert_array_equal(Z, np.eye(4))


def test_expm_nonfinite_gives_nan():
    A = np.array([[np.nan, 0.0], [0.0, 1.0]])
    assert np.isnan(expm(A)).any()


@pytest.mark.parametrize("n", [1, 3, 7])
def test_matvec_and_norm1_match_numpy(n):
    rng = np.random.default_rng(n)
    A, x, b = rng.normal(size=(n, n)), rng.normal(size=n), rng.normal(size=n)
    y = np.empty(n)
    linalg.matvec(A, x, y)
    np.testing.assert_allclose(y, A @ x, rtol=1e-13, atol=1e-14)
    linalg.matvec_add(A, x, b, y)
    np.testing.assert_allclose(y, b + A @ x, rtol=1e-13, atol=1e-14)
    assert linalg.norm1(A) == pytest.approx(np.linalg.norm(A, 1), rel=1e-14)
