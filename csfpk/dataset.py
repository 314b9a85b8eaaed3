"""NONMEM-style datasets: many subjects' records, observations and covariates, in and out.

A dataset is the everyday input of a population PK analysis (NONMEM ``$DATA``, mrgsolve
``data_set()``, rxode2 event tables): one CSV row per record, column names in any case::

    ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS     the dosing record (csfpk.Record; NONMEM meaning)
    DV, MDV                                          the observation and its missing-DV flag
    WT | WEIGHT | BW (kg), HT | HEIGHT (cm), BSA (m2), CRCL | CLCR (mL/min)     covariates
    C                                                rows with C = "C" or "#" are ignored (IGNORE=C)

"." and empty cells are NONMEM's missing value: 0 in the record fields, no observation in DV.
Other columns (AGE, SEX, STUDY, DATE …) are kept as they are and written back out; a column one
letter away from a record field (``RTAE``, ``AMTT``) is refused as a likely misspelling rather than
ignored (an infusion silently read as a bolus is worse than an error).

Each subject is simulated with its own records and with the drug's covariate models
(``[covariates]`` of the drug file, ``Drug.for_subject``) evaluated at its covariates. BSA missing
but weight and height given: Du Bois & Du Bois 1916 (``csfpk.drug.bsa_du_bois``). A covariate
absent from the dataset leaves the drug file's reference value. Time-varying covariates are
carried forward from the record that gives them (LOCF, as mrgsolve and rxode2 do; NONMEM applies
a record's value over the interval ending at it, so put the new value on the first record after the
change to get NONMEM's result); each stretch of constant covariates is an exact run of its own,
chained by the state (linear models; ``_solve_segments``).

Predictions are NONMEM's table values: at each record, the state after the record is processed
(``csfpk.solve(..., record_outputs=True)``), so DV and the prediction stand side by side.

Examples
--------
>>> import io, csfpk
>>> text = "ID,TIME,AMT,CMT,RATE,DV,CRCL\\n1,0,500,2,3000,.,90\\n1,2,0,2,0,25,90\\n2,0,500,2,3000,.,45\\n2,2,0,2,0,31,45\\n"
>>> data = csfpk.read_dataset(io.StringIO(text))
>>> out = csfpk.simulate_dataset("pemetrexed", data)
>>> sorted(out.ID.unique().tolist()), "csf" in set(out.compartment)
([1, 2], True)
"""

from dataclasses import dataclass

import numpy as np

from . import schedule
from .drug import bsa_du_bois, load_drug
from .errors import ParameterError, ScheduleError, SolverError
from .io import atomic_path
from .regimen import FIELDS, Regimen, columns, read_table, records, unknown_columns
from .simulation import as_model, choose_method, solve
from .status import Status
from .units import body_size, mg_per_L_to_nM

# covariate columns (lower case) -> keyword of Drug.for_subject / height
COVARIATE_COLUMNS = {"wt": "weight_kg", "weight": "weight_kg", "bw": "weight_kg", "ht": "height_cm",
                     "height": "height_cm", "bsa": "bsa_m2", "crcl": "crcl_mL_min", "clcr": "crcl_mL_min"}
# NONMEM and trial columns that are common and one letter away from a record field: never a misspelling
_COMMON = {"date", "dat1", "dat2", "dat3", "cmts", "dvid", "occ", "tad", "ntime", "tafd", "time2", "amt2",
           "rate2", "ss2", "evid2", "blq", "lloq", "age", "sex", "race", "dose", "study", "flag"}
NONMEM_ORDER = ("ID",) + tuple(f.upper() for f in FIELDS) + ("DV", "MDV")


@dataclass(frozen=True, eq=False)
class Subject:
    """One subject of a dataset: its ID, regimen (all its records), covariates and its rows."""

    id: object
    regimen: Regimen
    covariates: dict  # weight_kg, bsa_m2, crcl_mL_min at the first record (given or derived)
    rows: object  # pandas DataFrame: the subject's rows in NONMEM columns
    segments: tuple = ()  # ((first record index, covariates), ...) when covariates change over time


@dataclass(frozen=True, eq=False)
class Dataset:
    """A NONMEM-style dataset read by ``read_dataset``.

    ``table`` holds every kept row with NONMEM column names in upper case (``ID``, ``TIME`` …
    ``DV``, ``MDV``, covariates, other columns as written); ``subjects`` one ``Subject`` per ID.
    """

    table: object
    subjects: tuple
    where: str = "data"

    @property
    def n_subjects(self):
        return len(self.subjects)

    def summary(self, drug):
        """One row per subject: ID, records, doses, observations, number of covariate changes, and the
        covariates at the first record with the parameters they give."""
        import pandas as pd

        drug = load_drug(drug) if isinstance(drug, str) else drug
        rows = []
        for s in self.subjects:
            d = drug.for_subject(**s.covariates)
            obs = s.rows[(s.rows.EVID == 0) & (s.rows.MDV == 0)]
            row = {"ID": s.id, "records": len(s.rows), "doses": s.regimen.n_doses, "observations": len(obs),
                   "covariate_changes": max(len(s.segments) - 1, 0)}
            for key, label in (("weight_kg", "WT_kg"), ("bsa_m2", "BSA_m2"), ("crcl_mL_min", "CRCL_mL_min")):
                row[label] = round(s.covariates[key], 3) if key in s.covariates else "-"
            for k in drug.covariates:
                row[f"{k}_{'L_h' if k.startswith(('CL', 'Q')) else 'L' if k.startswith('V') else k}"] = \
                    round(getattr(d.plasma, k), 4)
            rows.append(row)
        return pd.DataFrame(rows)


def read_dataset(path):
    """Read a NONMEM-style dataset CSV (see module docstring) into a ``Dataset``.

    Raises ``ScheduleError`` with the file, line, column and value for any problem: unreadable or
    non-UTF-8 file, empty file or header only, missing ID/TIME/AMT, text in a numeric column, a
    misspelled column, an impossible record, time going back within a subject, a subject's records
    split by another subject's, or a covariate out of the human range or changing within a subject.
    """
    import pandas as pd

    where = str(getattr(path, "name", "data")) if hasattr(path, "read") else str(path)
    df = read_table(path)
    df.index = range(2, len(df) + 2)  # file line of each row (after the header)
    cols = columns(df, where)
    if "c" in cols:
        df = df[~df[cols["c"]].astype(str).str.strip().isin(("C", "#"))]
        if df.empty:
            raise ScheduleError(f"{where}: every row is commented out (C = 'C' or '#'); expected records")
    if "id" not in cols:
        raise ScheduleError(f"{where}: missing column 'ID'; a dataset names each row's subject (for one subject's "
                            "doses use --regimen FILE.csv / Regimen.from_csv)")
    known = set(FIELDS) | {"id", "dv", "mdv", "c"} | set(COVARIATE_COLUMNS)
    for key, col in cols.items():
        if key not in known and key not in _COMMON:
            near = [f for f in FIELDS + ("id", "dv", "mdv") if _one_edit(key, f)]
            if near:
                raise ScheduleError(unknown_columns(where, [col], list(FIELDS) + ["id", "dv", "mdv"],
                                                    f"a misspelled record column would be ignored; rename it "
                                                    f"{near[0].upper()!r} (or give it another name if it is data)"))
    covcols = {}
    for key, col in cols.items():
        if key in COVARIATE_COLUMNS:
            kind = COVARIATE_COLUMNS[key]
            if kind in covcols:
                raise ScheduleError(f"{where}: columns {covcols[kind]!r} and {col!r} both give {kind}; keep one")
            covcols[kind] = col

    # subjects: contiguous blocks of one ID each (plain lists: pandas per subject is slow)
    lines = list(df.index)
    text = {c: [str(v) for v in df[c].tolist()] for c in df.columns}
    ids = [v.strip() for v in text[cols["id"]]]
    blocks, seen = [], {}
    for j, i in enumerate(ids):
        if i in ("", "."):
            raise ScheduleError(f"{where}, line {lines[j]}: ID is missing; expected the subject's identifier")
        if j == 0 or i != ids[j - 1]:
            if i in seen:
                raise ScheduleError(f"{where}, line {lines[j]}: ID {i} appears again after other subjects' records; "
                                    "keep each subject's records together (NONMEM would read it as a new subject)")
            seen[i] = len(blocks)
            blocks.append([i, j, j + 1])
        else:
            blocks[-1][2] = j + 1

    columns_out = {name: [] for name in NONMEM_ORDER}
    others = [col for key, col in cols.items() if key not in set(FIELDS) | {"id", "dv", "mdv"}]
    columns_out.update({col: [] for col in others})
    subjects = []
    for sid, a, b in blocks:
        sub = {c: v[a:b] for c, v in text.items()}
        sub_lines = lines[a:b]
        recs = records(sub, cols, where, lines=sub_lines)
        segments = _subject_covariates(where, sid, sub_lines, sub, covcols)
        cov = segments[0][1]
        the_id = _id_value(sid)
        evid = np.array([r.evid for r in recs])
        dv = _numbers(where, sub_lines, sub.get(cols.get("dv")), "DV")
        if "mdv" in cols:
            mdv = _numbers(where, sub_lines, sub[cols["mdv"]], "MDV")
            bad = ~np.isin(np.nan_to_num(mdv, nan=-1), (0, 1))
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise ScheduleError(f"{where}, line {sub_lines[k]}: MDV = {sub[cols['mdv']][k].strip()!r} is not "
                                    "allowed; expected 0 or 1")
            mdv = mdv.astype(int)
        else:
            mdv = ((evid != 0) | np.isnan(dv)).astype(int)
        missing = (evid == 0) & (mdv == 0) & np.isnan(dv)
        if missing.any():
            raise ScheduleError(f"{where}, line {sub_lines[int(np.flatnonzero(missing)[0])]}: DV is missing on an "
                                "observation record (EVID 0, MDV 0); give DV or set MDV = 1")
        columns_out["ID"] += [the_id] * (b - a)
        for f in FIELDS:
            columns_out[f.upper()] += [getattr(r, f) for r in recs]
        columns_out["DV"] += dv.tolist()
        columns_out["MDV"] += mdv.tolist()
        for col in others:
            key = col.strip().lower()
            columns_out[col] += (_numbers(where, sub_lines, sub[col], col).tolist() if key in COVARIATE_COLUMNS
                                 else sub[col])
        subjects.append(Subject(the_id, Regimen(tuple(recs), name=f"ID {sid}"), cov,
                                slice(len(columns_out["ID"]) - (b - a), len(columns_out["ID"])),
                                tuple(segments) if len(segments) > 1 else ()))
    table = pd.DataFrame(columns_out, index=lines)
    subjects = tuple(Subject(s.id, s.regimen, s.covariates, table.iloc[s.rows], s.segments) for s in subjects)
    return Dataset(table=table, subjects=subjects, where=where)


def simulate_dataset(drug, data, *, csf_layout="single", physiology=None, method="auto"):
    """Simulate every subject of a dataset with its own records and covariates.

    Parameters
    ----------
    drug : a ``Drug`` or a drug name; its ``[covariates]`` models are applied per subject.
    data : a ``Dataset`` (``read_dataset``) or a path to a dataset CSV.
    csf_layout, physiology, method : as for ``csfpk.simulate``.

    Returns
    -------
    pandas.DataFrame, tidy: one row per record and output compartment, with the dataset's columns
    (ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, DV, MDV, covariates, others) beside
    ``compartment``, ``conc_mg_L``, ``conc_nM`` and ``conc_ng_mL``: the state after each record,
    as in a NONMEM table. ``write_dataset`` writes it back as a NONMEM-style CSV.

    Named ``simulate_dataset`` (not mrgsolve's ``data_set``) because it says what goes in and that it
    runs the simulation, beside ``simulate`` for one regimen.
    """

    drug = load_drug(drug) if isinstance(drug, str) else drug
    data = data if isinstance(data, Dataset) else read_dataset(data)
    preds, names, mw = [], None, None
    for s in data.subjects:
        try:
            model = as_model(drug.for_subject(**s.covariates), csf_layout=csf_layout, physiology=physiology)
            if s.segments:
                amounts, parts = _solve_segments(drug, s, model, csf_layout, physiology, method)
            else:
                amounts, _, _ = solve(model, s.regimen, np.array([]), method=method, record_outputs=True)
                parts = [(0, len(amounts), model)]
        except (ScheduleError, ParameterError) as exc:
            raise type(exc)(f"{data.where}: ID {s.id}: {exc}") from None
        names, mw = sorted(model.outputs), model.molecular_weight
        conc = np.empty((len(amounts), len(names)))
        for j0, j1, m in parts:  # each segment's own volumes (a covariate on V changes C at once)
            for o, k in enumerate(names):
                idx, vol, scale = m.outputs[k]
                conc[j0:j1, o] = scale * amounts[j0:j1, idx] / vol
        preds.append(conc)
    # one frame built once: record rows (in file order, as data.table) × compartments (sorted)
    conc = np.vstack(preds).ravel()
    base = data.table.reset_index(drop=True)
    out = base.iloc[np.repeat(np.arange(len(base)), len(names))].reset_index(drop=True)
    out["compartment"] = np.tile(np.array(names, dtype=object), len(base))
    out["conc_mg_L"] = conc
    out["conc_nM"] = mg_per_L_to_nM(conc, mw)
    out["conc_ng_mL"] = conc * 1e3
    return out


def _solve_segments(drug, subject, model0, csf_layout, physiology, method):
    """Record outputs (amounts, [(j0, j1, model)]) of a subject whose covariates change: one exact run
    per segment, chained.

    Segment k (records j0 … j1−1, covariates c_k) runs the whole regimen's timeline for the model
    of c_k, cut just after the state at t_j0 (a grid sample before the records at t_j0), and starts
    from the state and running infusion rates the previous segment reached there (a reset, then
    those amounts as boluses and those rates as rate changes). Exact for linear models: between
    events x(t) = exp(K_k·(t − t_j0))·x(t_j0) + …, with K_k the rate matrix of c_k.
    """
    from ._kernels import exact

    if choose_method(model0, method) != "exact":
        raise ScheduleError("covariates that change within a subject need a linear model and method 'exact' "
                            f"({model0.name} is nonlinear or method = {method!r})")
    recs = subject.regimen.records
    times = [r.time for r in recs]
    n_rec = len(recs)
    out = np.zeros((n_rec, model0.n))
    parts = []
    x = np.zeros(model0.n)
    r = np.zeros(model0.n)
    segs = list(subject.segments)
    for k, (j0, cov) in enumerate(segs):
        j1 = segs[k + 1][0] if k + 1 < len(segs) else n_rec
        t0, t1 = times[j0], times[j1] if j1 < n_rec else times[-1]
        model = as_model(drug.for_subject(**cov), csf_layout=csf_layout, physiology=physiology)
        tl = schedule.build_timeline(model, subject.regimen, np.array([t0, t1]), record_outputs=True)
        kind, time_, cmt, value, aux = tl.kind, tl.time, tl.cmt, tl.value, tl.aux
        if k > 0:
            cut = int(np.flatnonzero((kind == schedule.OBS) & (value == 0.0))[0]) + 1
            inj = [(schedule.RESET, 0, 0.0)] + [(schedule.BOLUS, c, x[c]) for c in range(model.n) if x[c] != 0.0] \
                + [(schedule.RATE, c, r[c]) for c in range(model.n) if r[c] != 0.0]
            m = len(inj)
            kind = np.concatenate([np.array([a[0] for a in inj], dtype=np.int64), kind[cut:]])
            cmt = np.concatenate([np.array([a[1] for a in inj], dtype=np.int64), cmt[cut:]])
            value = np.concatenate([np.array([a[2] for a in inj], dtype=float), value[cut:]])
            time_ = np.concatenate([np.full(m, t0), time_[cut:]])
            aux = np.concatenate([np.zeros((m, 3)), aux[cut:]])
        seg_out = np.zeros((tl.n_out, model.n))
        code = exact.run_subject(np.ascontiguousarray(model.K, dtype=np.float64), np.int64(model.n_dynamic), kind,
                                 time_, cmt, value, aux, 0.0, seg_out)
        if code != 0:
            raise SolverError(f"{model.name}: {Status(int(code)).name}: {Status(int(code)).message}")
        out[j0:j1] = seg_out[2 + j0: 2 + j1]
        parts.append((j0, j1, model))
        # state and running rates just before the records at t1 (the grid sample there, row 1)
        x = seg_out[1].copy()
        r = np.zeros(model.n)
        upto = int(np.flatnonzero((kind == schedule.OBS) & (value == 1.0))[0])
        for a in range(upto):
            if kind[a] == schedule.RESET:
                r[:] = 0.0
            elif kind[a] == schedule.RATE:
                r[cmt[a]] += value[a]
    if not np.all(np.isfinite(out)):
        raise SolverError(f"{model0.name}: the amounts overflowed to inf/NaN")
    return out, parts


def write_dataset(table, path):
    """Write a dataset or ``simulate_dataset``'s frame as a NONMEM-style CSV (atomically).

    One row per record with the NONMEM columns first, then covariates and other columns, then
    one prediction column per compartment and unit (``PLASMA_MG_L``, ``PLASMA_NM``, ``CSF_NM`` …);
    ``read_dataset`` reads it back (prediction columns are kept as other data).
    """
    if isinstance(table, Dataset):
        table = table.table
    wide = table
    if "compartment" in table.columns:
        keys = [c for c in table.columns if c not in ("compartment", "conc_mg_L", "conc_nM", "conc_ng_mL")]
        comps = list(dict.fromkeys(table.compartment))
        n = len(comps)
        if len(table) % n:
            raise ScheduleError("write_dataset: the frame does not hold every compartment for every record")
        base = table[table.compartment == comps[0]][keys].reset_index(drop=True)
        for comp in comps:
            part = table[table.compartment == comp].reset_index(drop=True)
            base[f"{comp.upper()}_MG_L"] = part.conc_mg_L
            base[f"{comp.upper()}_NM"] = part.conc_nM
        wide = base
    order = [c for c in NONMEM_ORDER if c in wide.columns] + [c for c in wide.columns if c not in NONMEM_ORDER]
    wide = wide[order]
    with atomic_path(path) as tmp:
        wide.to_csv(tmp, index=False, na_rep=".")
    return path


def _subject_covariates(where, sid, lines, sub, covcols):
    """The subject's covariates as segments ``[(first record index, {keyword: value}), ...]``.

    Values are carried forward from the record that gives them (last observation carried forward,
    as mrgsolve and rxode2 do); a missing value before the first one given takes that first value.
    """
    n = len(lines)
    per = {}
    for kind, col in covcols.items():
        vals = _numbers(where, lines, sub[col], col)
        given = np.flatnonzero(~np.isnan(vals))
        if not given.size:
            continue
        for j in given:
            if j == given[0] or vals[j] != vals[given[given < j][-1]]:
                try:
                    body_size(float(vals[j]), col, kind)
                except ScheduleError as exc:
                    raise ScheduleError(f"{where}, line {lines[j]}: {exc}") from None
        filled = vals.copy()
        filled[: given[0]] = vals[given[0]]
        for j in range(given[0] + 1, n):
            if np.isnan(filled[j]):
                filled[j] = filled[j - 1]
        per[kind] = filled
    segments = []
    for j in range(n):
        cov = {k: float(v[j]) for k, v in per.items()}
        if "bsa_m2" not in cov and "weight_kg" in cov and "height_cm" in cov:
            cov["bsa_m2"] = bsa_du_bois(cov["weight_kg"], cov["height_cm"])
        cov.pop("height_cm", None)
        if not segments or cov != segments[-1][1]:
            segments.append((j, cov))
    return segments or [(0, {})]


def _numbers(where, lines, cells, name):
    """Numeric cells (text) as float64, "." and "" as NaN; text is refused with its line."""
    if cells is None:
        return np.full(len(lines), np.nan)
    out = np.empty(len(lines))
    for j, (line, text) in enumerate(zip(lines, cells)):
        t = str(text).strip()
        if t in ("", "."):
            out[j] = np.nan
            continue
        try:
            out[j] = float(t)
        except ValueError:
            raise ScheduleError(f"{where}, line {line}: {name} = {t!r} is not a number") from None
        if not np.isfinite(out[j]):
            raise ScheduleError(f"{where}, line {line}: {name} = {t!r} is not allowed; expected a finite number")
    return out


def _id_value(text):
    """IDs are kept as integers when they are integers (as NONMEM requires), else as text."""
    try:
        f = float(text)
    except ValueError:
        return text
    return int(f) if f.is_integer() else f


def _one_edit(a, b):
    """True when ``a`` differs from ``b`` by one substitution, insertion, deletion or adjacent swap."""
    if a == b or abs(len(a) - len(b)) > 1 or min(len(a), len(b)) < 2:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    s, t = (a, b) if len(a) < len(b) else (b, a)
    return any(t[:i] + t[i + 1:] == s for i in range(len(t)))
