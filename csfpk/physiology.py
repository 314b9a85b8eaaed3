"""Adult CSF physiology: volumes, bulk flow, regional routing and mixing; default body size; their
variability between patients.

Loaded strictly from ``params/physiology/<name>.toml`` (schema ``csfpk.physiology/1``).
"""

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from .errors import ParameterError
from .paths import file_key, resolve
from .quantity import POSITIVE, PicklesMappings, Spec, check_value, read_document, read_entry, require_keys

CSF_SPECS = {"volume": Spec("L", **POSITIVE), "bulk_flow": Spec("L/h", **POSITIVE),
             "volume_interstitial": Spec("L", **POSITIVE),
             "drainage_fraction": Spec("1", low=0.0, high=1.0),
             "drainage_half_life": Spec("h", **POSITIVE)}
REGIONAL_SPECS = {
    "volume_ventricles": Spec("L", **POSITIVE),
    "volume_cisterna": Spec("L", **POSITIVE),
    "volume_cranial": Spec("L", **POSITIVE),
    "volume_lumbar": Spec("L", **POSITIVE),
    "spinal_fraction": Spec("1", low=0.0, high=1.0, high_open=True),
    "mixing_cranial_lumbar": Spec("L/h", low=0.0),
    "mixing_ventricles_cisterna": Spec("L/h", low=0.0),
    "mixing_cisterna_cranial": Spec("L/h", low=0.0),
}
# inter-individual variability (log-normal, ``csfpk.population``) a physiology file's [iiv] table may give:
# the Physiology values that vary per subject, and CL_out, the CSF efflux clearance of a drug in the
# mechanistic mode (the patient's barrier, not the drug, is what varies)
IIV_KEYS = ("csf_volume", "bulk_flow", "volume_ventricles", "volume_cisterna", "volume_cranial", "volume_lumbar",
            "mixing_cranial_lumbar", "CL_out")
BODY_SPECS = {"weight": Spec("kg", **POSITIVE), "bsa": Spec("m2", **POSITIVE), "crcl": Spec("mL/min", **POSITIVE)}


@dataclass(frozen=True)
class Physiology(PicklesMappings):
    """CSF physiology (volumes in L, flows in L/h) and default body size.

    ``csf_volume`` and ``bulk_flow`` define the ``single`` layout; the ``regional`` layout uses the
    four regional volumes, the share of bulk flow routed through the spinal subarachnoid space
    (``spinal_fraction``) and two-way mixing clearances (L/h). ``volume_interstitial`` (L) is the
    brain interstitial fluid that exchanges with the CSF for drugs with a ``csf.CL_interstitial``.
    ``drainage_fraction`` (share of the CSF bulk outflow) and ``drainage_half_life`` (h) define the
    delayed outflow route (perineural/lymphatic drainage, ``csfpk.model``): given together or not at all.
    ``iiv`` maps names of ``IIV_KEYS`` to the coefficient of variation (fraction) of their
    log-normal inter-individual variability in populations (the file's ``[iiv]`` table).
    """

    csf_volume: float = 0.14
    bulk_flow: float = 0.021
    volume_interstitial: float | None = None
    drainage_fraction: float | None = None
    drainage_half_life: float | None = None
    volume_ventricles: float | None = None
    volume_cisterna: float | None = None
    volume_cranial: float | None = None
    volume_lumbar: float | None = None
    spinal_fraction: float = 0.0
    mixing_cranial_lumbar: float = 0.0
    mixing_ventricles_cisterna: float = 0.0
    mixing_cisterna_cranial: float = 0.0
    weight_kg: float = 70.0
    bsa_m2: float = 1.8
    crcl_mL_min: float = 100.0
    name: str = "custom"
    quantities: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    iiv: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self):
        iiv = {}
        for k, cv in dict(self.iiv).items():
            if k not in IIV_KEYS:
                raise ParameterError(f"physiology iiv.{k} is not allowed; expected one of {list(IIV_KEYS)}")
            iiv[k] = check_value("physiology", f"iiv.{k}", cv, Spec("fraction", low=0.0, high=3.0))
        object.__setattr__(self, "iiv", MappingProxyType(iiv))
        check_value("physiology", "csf_volume", self.csf_volume, CSF_SPECS["volume"])
        check_value("physiology", "bulk_flow", self.bulk_flow, CSF_SPECS["bulk_flow"])
        if self.volume_interstitial is not None:
            check_value("physiology", "volume_interstitial", self.volume_interstitial, CSF_SPECS["volume_interstitial"])
        if (self.drainage_fraction is None) != (self.drainage_half_life is None):
            raise ParameterError("physiology drainage_fraction and drainage_half_life (the delayed CSF outflow route) "
                                 "go together; expected both or neither")
        for k in ("drainage_fraction", "drainage_half_life"):
            if getattr(self, k) is not None:
                check_value("physiology", k, getattr(self, k), CSF_SPECS[k])
        for k in ("spinal_fraction", "mixing_cranial_lumbar", "mixing_ventricles_cisterna", "mixing_cisterna_cranial"):
            check_value("physiology", k, getattr(self, k), REGIONAL_SPECS[k])

    @property
    def has_drainage(self):
        """True when the physiology has the delayed CSF outflow route (``csf_drainage`` compartment)."""
        return self.drainage_fraction is not None

    @property
    def has_regional(self):
        return None not in (self.volume_ventricles, self.volume_cisterna, self.volume_cranial, self.volume_lumbar)

    def replace(self, **changes):
        return replace(self, **changes)


def load_physiology(name_or_path="adult"):
    """Load and validate a physiology file by name (``"adult"``) or path."""
    return _load_physiology(file_key(resolve("physiology", name_or_path)))


@functools.lru_cache(maxsize=32)
def _load_physiology(key):
    path = Path(key[0])
    doc, where = read_document(path, "csfpk.physiology/1", ("name", "csf"), ("body", "iiv"))
    quantities = {}
    csf = doc["csf"]
    require_keys(f"{where} [csf]", csf, ("volume", "bulk_flow"),
                 ("regional", "volume_interstitial", "drainage_fraction", "drainage_half_life"))
    values = {}
    for key in [k for k in CSF_SPECS if k in csf]:
        q = read_entry(f"{where} [csf]", key, csf[key], CSF_SPECS[key])
        quantities[f"csf.{key}"] = q
        values["csf_volume" if key == "volume" else key] = q.value
    if "regional" in csf:
        reg = csf["regional"]
        required = ("volume_ventricles", "volume_cisterna", "volume_cranial", "volume_lumbar", "spinal_fraction",
                    "mixing_cranial_lumbar")
        require_keys(f"{where} [csf.regional]", reg, required, ("mixing_ventricles_cisterna", "mixing_cisterna_cranial"))
        for key, entry in reg.items():
            q = read_entry(f"{where} [csf.regional]", key, entry, REGIONAL_SPECS[key])
            quantities[f"csf.regional.{key}"] = q
            values[key] = q.value
    body = doc.get("body", {})
    require_keys(f"{where} [body]", body, (), tuple(BODY_SPECS))
    for key, entry in body.items():
        q = read_entry(f"{where} [body]", key, entry, BODY_SPECS[key])
        quantities[f"body.{key}"] = q
        values[{"weight": "weight_kg", "bsa": "bsa_m2", "crcl": "crcl_mL_min"}[key]] = q.value
    table = doc.get("iiv", {})
    require_keys(f"{where} [iiv]", table, (), IIV_KEYS)
    iiv = {}
    for key, entry in table.items():
        q = read_entry(f"{where} [iiv]", key, entry, Spec("%CV", low=0.0, high=300.0))
        quantities[f"iiv.{key}"] = q
        iiv[key] = q.value / 100.0
    try:
        return Physiology(name=doc["name"], quantities=MappingProxyType(quantities), iiv=MappingProxyType(iiv),
                          **values)
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None
