"""Right-hand side and Jacobian of the csfpk compartment model.

The model state ``x`` holds amounts (mg). With a rate matrix ``K`` (1/h), a vector of zero-order
input rates ``r`` (mg/h, active infusions) and the optional nonlinear terms of the central
compartment::

    dx/dt = K·x + r − e_c·(E_MM(x_c) + E_TV(t, x_c)) + e_s·(E_MM(x_c) + E_TV(t, x_c))

    E_MM(x_c)    = Vmax · C / (Km + C),              C = x_c / V1          (Michaelis–Menten)
    E_TV(t, x_c) = ΔCL · (1 − exp(−k_ind · t)) · C                         (autoinduction)

and, with saturable CSF uptake, the influx central → CSF that ``K`` carries as k_in·x_c becomes
k_in·x_c / (1 + x_c/A_sat) (Michaelis–Menten carrier-mediated uptake, flux = J_max·C_u/(K_u + C_u)
with J_max = CL_in·K_u and A_sat = K_u·V1/fu the central amount at half saturation). The kernel adds
the saturated part back to the central compartment::

    dx_c/dt   += S(x_c),    dx_csf/dt −= S(x_c),    S(x_c) = k_in · x_c² / (A_sat + x_c)

where ``c`` is the central compartment and ``s`` the elimination sink (cumulative amount
eliminated), so that the column sums of the full system are zero and mass is conserved:
Σ x(t) = Σ doses given. References: Michaelis–Menten elimination, Wagner (1973) J Pharmacokinet
Biopharm 1:103; time-dependent clearance for lorlatinib autoinduction, Chen et al. (2021) CPT
Pharmacometrics Syst Pharmacol 10:148; saturable uptake into CSF, as reported for gefitinib at
1250 mg daily (Shriyan et al. 2020 Eur J Clin Pharmacol, doi 10.1007/s00228-020-02926-9).

``nl`` packs the nonlinear parameters as a float64 array (slots ``NL_*`` of ``codes``). A model with
``nl[NL_VMAX] == 0``, ``nl[NL_DCL] == 0`` and ``nl[NL_ASAT] == 0`` is linear and time-invariant.
"""

import numpy as np
from numba import njit

from csfpk._kernels.codes import NL_ASAT, NL_CENTRAL, NL_CSF, NL_DCL, NL_KIN, NL_KIND, NL_KM, NL_SINK, NL_V1, NL_VMAX
from csfpk._kernels.linalg import matvec_add


@njit(cache=True, nogil=True)
def rhs(t, x, K, r, nl, dx):
    """Write dx/dt into ``dx`` (see module docstring for the equation)."""
    matvec_add(K, x, r, dx)
    vmax = nl[NL_VMAX]
    dcl = nl[NL_DCL]
    if vmax != 0.0 or dcl != 0.0:
        c = int(nl[NL_CENTRAL])
        sink = int(nl[NL_SINK])
        conc = x[c] / nl[NL_V1]
        flux = 0.0
        if vmax != 0.0:
            flux += vmax * conc / (nl[NL_KM] + conc)
        if dcl != 0.0:
            flux += dcl * (1.0 - np.exp(-nl[NL_KIND] * t)) * conc
        dx[c] -= flux
        dx[sink] += flux
    asat = nl[NL_ASAT]
    if asat != 0.0:
        c = int(nl[NL_CENTRAL])
        back = nl[NL_KIN] * x[c] * x[c] / (asat + x[c])
        dx[c] += back
        dx[int(nl[NL_CSF])] -= back


@njit(cache=True, nogil=True)
def jacobian(t, x, K, nl, J):
    """Write ∂(dx/dt)/∂x into ``J``.

    d E_MM / d x_c = Vmax · Km / (V1 · (Km + C)²);  d E_TV / d x_c = ΔCL (1 − e^{−k_ind t}) / V1;
    d S / d x_c = k_in · x_c (x_c + 2 A_sat) / (A_sat + x_c)².
    """
    n = x.shape[0]
    for i in range(n):
        for j in range(n):
            J[i, j] = K[i, j]
    vmax = nl[NL_VMAX]
    dcl = nl[NL_DCL]
    if vmax != 0.0 or dcl != 0.0:
        c = int(nl[NL_CENTRAL])
        sink = int(nl[NL_SINK])
        v1 = nl[NL_V1]
        conc = x[c] / v1
        d = 0.0
        if vmax != 0.0:
            km = nl[NL_KM]
            d += vmax * km / (v1 * (km + conc) * (km + conc))
        if dcl != 0.0:
            d += dcl * (1.0 - np.exp(-nl[NL_KIND] * t)) / v1
        J[c, c] -= d
        J[sink, c] += d
    asat = nl[NL_ASAT]
    if asat != 0.0:
        c = int(nl[NL_CENTRAL])
        xc = x[c]
        ds = nl[NL_KIN] * xc * (xc + 2.0 * asat) / ((asat + xc) * (asat + xc))
        J[c, c] += ds
        J[int(nl[NL_CSF]), c] -= ds


@njit(cache=True, nogil=True)
def time_derivative(t, x, nl, dfdt):
    """Write ∂(dx/dt)/∂t into ``dfdt`` (only the autoinduction term depends on t explicitly)."""
    for i in range(x.shape[0]):
        dfdt[i] = 0.0
    dcl = nl[NL_DCL]
    if dcl != 0.0:
        c = int(nl[NL_CENTRAL])
        sink = int(nl[NL_SINK])
        k = nl[NL_KIND]
        g = dcl * k * np.exp(-k * t) * x[c] / nl[NL_V1]
        dfdt[c] = -g
        dfdt[sink] = g
