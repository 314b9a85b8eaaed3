"""The run folder: the one on-disk format of a population run, written and read here only (DESIGN §7).

Layout of ``RUN_DIR``::

    manifest.json                          schema, status, chunk size, versions, spec, the resolved
                                           record of every scenario and their hash; checksums of the
                                           summary files. Written first ("running"), completed last.
    .lock                                  advisory lock (fcntl.flock) held by the writing process
    scenarios/<key>/metrics-000000.parquet per-subject metrics of chunk 0 (subjects [start, stop))
    scenarios/<key>/curves-000000.npy      downsampled curves (float32, subjects × times × outputs), optional
    scenarios/<key>/doses-000000.parquet   escalation scenarios (record key "escalation"): the dose timeline
                                           of each subject of the chunk, one row per subject × injection
                                           (subject, injection, time_h, dose_mg, action = the decision)
    scenarios/<key>/chunk-000000.json      the chunk's subject range, row count and the SHA-256 of its
                                           files; written atomically after them: it marks the chunk done
    summary.csv                            one row per scenario: median, 5th, 95th percentile, PTA
    curves_summary.csv                     percentile bands of the curves (runs with curves)
    summary.png                            CSF Cavg per regimen

``<key>`` is ``Scenario.key``: a readable slug plus a hash of the scenario's resolved record.
Each record says how its metrics were computed: ``"metrics": "exact"`` (grid-free, exact for the
linear model) or ``"grid"`` (read off the output grid every ``dt`` h); records written before that
key existed hold grid metrics (``metrics_mode``).
Every file is written atomically (a temporary ``.<stem>-*`` beside it, then a rename).

Guarantees, each checked by tests/test_runfolder.py:

* One writer: the writing process holds an exclusive ``flock`` on ``.lock`` for the whole run; a
  second writer is refused. Temporaries left by a killed writer are removed only while holding that
  lock, so a live writer's in-flight files are never touched.
* Resume: an interrupted folder is continued chunk by chunk; the chunk size comes from the manifest
  only after the manifest's own hash (spec, chunk size, curves) checks out, and every finished chunk
  is verified (subject range, checksums) before it is trusted.
* Overwrite: ``overwrite=True`` builds the new run in a sibling folder ``.<name>.csfpk-new-*`` and
  swaps it in with renames when it is complete; an interrupted overwrite leaves the old run intact.
  Entries of the old folder that are not part of this format (a ``figures/`` folder drawn by
  ``csfpk plot``, a user's notes) are moved into the new run unchanged: stale figures stay until
  ``csfpk plot`` redraws them, but nothing a user put there is deleted.
  The swap is two renames (old → ``.<name>.csfpk-old-*``, build → ``<name>``); a kill between them
  leaves both folders beside ``<name>`` and deletes nothing.
* Readers (``read_run``) verify before anything is drawn: schema, status, manifest hash, scenario
  keys (relative names only), every chunk's range and checksum, and the summary files' checksums.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time

from .errors import CsfpkError
from .io import atomic_path
from .scenario import digest, plain

SCHEMA = "csfpk.run/2"
LOCK = ".lock"
MANIFEST = "manifest.json"
SUMMARY = "summary.csv"
CURVES_SUMMARY = "curves_summary.csv"
SUMMARY_PNG = "summary.png"
SCENARIOS = "scenarios"
FORMAT_ENTRIES = (MANIFEST, SUMMARY, CURVES_SUMMARY, SUMMARY_PNG, SCENARIOS, LOCK)
_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,120}$")
_TEMP = re.compile(r"^\.(metrics|curves|doses|chunk|manifest|summary|curves_summary)-\d*-?[A-Za-z0-9_]+"
                   r"\.(parquet|npy|json|csv|png)$")
# Test hooks (tests/test_runfolder.py): stop the process with SIGKILL after N finished chunks, or
# pause it while the Nth chunk's metrics file is still a temporary (the process prints a line first).
STOP_AFTER_CHUNKS = "CSFPK_TEST_STOP_AFTER_CHUNKS"
PAUSE_IN_CHUNK = "CSFPK_TEST_PAUSE_IN_CHUNK"


class RunFolderError(CsfpkError):
    """The run folder cannot be used: finished, locked, changed, holding another spec, or not a run folder."""


class FinishedRunError(RunFolderError):
    """The folder holds a finished run of the same spec (``folder`` names it)."""

    def __init__(self, message, folder):
        super().__init__(message)
        self.folder = folder


def metrics_mode(record):
    """How a scenario record's metrics were computed: ``"exact"`` or ``"grid"`` (module docstring)."""
    return record.get("metrics", "grid")


def chunk_plan(n, chunk):
    """``[(index, start, stop), ...]``: subjects ``[start, stop)`` of each chunk of ``n`` subjects."""
    return [(i, s, min(s + chunk, n)) for i, s in enumerate(range(0, n, chunk))]


def sha256_file(path):
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_hash(man):
    """Hash of what fixes the rows of a run: the scenarios' spec hash, the chunk size and curves."""
    return digest({"spec_hash": man.get("spec_hash"), "chunk": man.get("chunk"), "curves": man.get("curves")})


def _versions():
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("csfpk", "numpy", "scipy", "numba", "pandas", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _write_json(path, data):
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(plain(data), fh, indent=1, sort_keys=True)


def _read_json(path):
    with open(path) as fh:
        return json.load(fh)


def _lock(folder):
    """Open ``folder/.lock`` and take an exclusive, non-blocking flock; return the file or None if held."""
    fh = open(os.path.join(folder, LOCK), "a")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def _only_leftovers(folder):
    """True when ``folder`` holds nothing but a lock file and csfpk temporaries (a killed creation)."""
    return all(name == LOCK or _TEMP.match(name) for name in os.listdir(folder))


def _remove_temporaries(folder):
    """Delete temporaries a killed writer left (call only while holding the folder's lock)."""
    for root, _, files in os.walk(folder):
        for f in files:
            if _TEMP.match(f):
                os.unlink(os.path.join(root, f))


def _remove_stale_siblings(out):
    """Delete ``.<name>.csfpk-new-*`` build folders of interrupted overwrites whose lock is free."""
    parent, name = os.path.split(out)
    for entry in os.listdir(parent or "."):
        if entry.startswith(f".{name}.csfpk-new-"):
            path = os.path.join(parent, entry)
            fh = _lock(path) if os.path.isdir(path) else None
            if fh is not None:
                shutil.rmtree(path)
                fh.close()


def _fail_unwritable(out, exc):
    raise RunFolderError(f"--out {out!r} cannot be written ({exc.strerror or exc}); choose a writable folder") from None


class RunWriter:
    """An open run folder being written: holds the lock; writes chunks, summaries and the manifest.

    Build one with ``RunWriter.open``; use it as a context manager so the lock is released.
    """

    def __init__(self, out, path, lock, manifest, resumed, old_lock=None):
        self.out = out              # where the finished run lives
        self.path = path            # where it is being written (a sibling folder when overwriting)
        self.manifest = manifest
        self.resumed = resumed
        self._lock = lock
        self._old_lock = old_lock
        self._written = 0

    @property
    def chunk(self):
        return self.manifest["chunk"]

    @classmethod
    def open(cls, out, *, spec, spec_hash, scenarios, chunk, default_chunk, curves, overwrite):
        """Create, resume or refuse ``out``; ``scenarios`` are the scenarios' plain records.

        Raises ``RunFolderError`` (one line) before anything is written when the folder cannot be used.
        """
        out = os.path.abspath(os.fspath(out))
        if os.path.exists(out) and not os.path.isdir(out):
            raise RunFolderError(f"--out {out!r} is a file; expected a folder")
        head = {"schema": SCHEMA, "spec_hash": spec_hash, "curves": bool(curves), "spec": spec,
                "scenarios": scenarios}
        try:
            if not os.path.isdir(out):
                os.makedirs(out)
            elif not os.path.isfile(os.path.join(out, MANIFEST)) and not _only_leftovers(out):
                raise RunFolderError(f"--out {out!r} exists, is not empty and is not a csfpk run folder; "
                                     "choose a new --out")
            lock = _lock(out)
        except OSError as exc:
            _fail_unwritable(out, exc)
        if lock is None:
            raise RunFolderError(f"{out!r} is being written by another csfpk process (its lock is held); wait for it "
                                 "to finish or choose another --out")
        try:
            return cls._open_locked(out, lock, head, chunk, default_chunk, overwrite)
        except BaseException:
            lock.close()
            raise

    @classmethod
    def _open_locked(cls, out, lock, head, chunk, default_chunk, overwrite):
        mpath = os.path.join(out, MANIFEST)
        if not os.path.isfile(mpath):  # new folder, or one whose manifest creation was killed
            _remove_temporaries(out)
            return cls(out, out, lock, cls._create(out, head, chunk or default_chunk), resumed=False)
        try:
            old = _read_json(mpath)
        except (OSError, ValueError) as exc:
            if not overwrite:
                raise RunFolderError(f"{mpath}: unreadable ({exc}); choose a new --out or pass --overwrite") from None
            old = {}
        if overwrite:
            _remove_stale_siblings(out)
            parent, name = os.path.split(out)
            build = tempfile.mkdtemp(prefix=f".{name}.csfpk-new-", dir=parent)
            new_lock = _lock(build)
            return cls(out, build, new_lock, cls._create(build, head, chunk or default_chunk), resumed=False,
                       old_lock=lock)
        if old.get("schema") != SCHEMA:
            raise RunFolderError(f"{mpath}: schema = {old.get('schema')!r}; expected {SCHEMA!r} (a run of another "
                                 "csfpk version); choose a new --out or pass --overwrite")
        if old.get("spec_hash") != head["spec_hash"] or old.get("curves") != head["curves"]:
            raise RunFolderError(
                f"{out!r} holds a different run (spec hash {old.get('spec_hash')}, curves {old.get('curves')}; "
                f"this one is {head['spec_hash']}, curves {head['curves']}); choose a new --out or pass --overwrite")
        if old.get("status") == "complete":
            raise FinishedRunError(f"{out!r} holds a finished run of this spec; pass --overwrite to run it again "
                                   "or choose a new --out", out)
        c = old.get("chunk")
        if isinstance(c, bool) or not isinstance(c, int) or c < 1 or old.get("run_hash") != run_hash(old):
            raise RunFolderError(f"{mpath}: chunk = {c!r} does not match the manifest's run hash (the manifest was "
                                 "edited); pass --overwrite to start again")
        if chunk is not None and chunk != c:
            raise RunFolderError(f"{out!r} is an interrupted run with chunk = {c}; resume it with the same --chunk "
                                 f"(got {chunk}) or pass --overwrite")
        _remove_temporaries(out)  # safe: we hold the lock, so no live writer owns them
        return cls(out, out, lock, old, resumed=True)

    @staticmethod
    def _create(folder, head, chunk):
        man = dict(head, chunk=chunk, status="running", versions=_versions(),
                   created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        man["run_hash"] = run_hash(man)
        _write_json(os.path.join(folder, MANIFEST), man)
        return plain(man)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for fh in (self._lock, self._old_lock):
            if fh is not None and not fh.closed:
                fh.close()

    # ------------------------------------------------------------------ chunks
    def done_chunks(self, record):
        """Indices of the scenario's finished chunks, each verified (raises naming a changed chunk)."""
        folder = os.path.join(self.path, SCENARIOS, record["key"])
        if not os.path.isdir(folder):
            return set()
        plan = chunk_plan(record["population"]["n"], self.chunk)
        done = set()
        for i, a, b in plan:
            if os.path.exists(_file(folder, "chunk", i, "json")):
                _check_chunk(folder, record, i, a, b, self.manifest)
                done.add(i)
        return done

    def write_chunk(self, record, i, start, stop, frame, curves, doses=None):
        """Write chunk ``i`` (subjects ``start … stop−1``): curves, doses (escalation scenarios), metrics, then the
        sidecar that marks it done. Returns the metrics as the Arrow table written (``read_metrics`` takes it
        back in place of reading the file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = os.path.join(self.path, SCENARIOS, record["key"])
        side = {"run_hash": self.manifest["run_hash"], "key": record["key"], "start": int(start), "stop": int(stop),
                "rows": len(frame)}
        if (doses is not None) != _has_doses(record):
            raise RunFolderError(f"{folder}: chunk {i} of scenario {record['id']!r}: a dose timeline is written for "
                                 "escalation scenarios and only for them")
        if doses is not None:
            path = _file(folder, "doses", i, "parquet")
            with atomic_path(path) as tmp:
                pq.write_table(pa.Table.from_pandas(doses, preserve_index=False), tmp)
            side["doses_sha256"] = sha256_file(path)
        if curves is not None:
            import numpy as np

            path = _file(folder, "curves", i, "npy")
            with atomic_path(path) as tmp:
                np.save(tmp, curves)
            side["curves_sha256"] = sha256_file(path)
        path = _file(folder, "metrics", i, "parquet")
        with atomic_path(path) as tmp:
            # no dictionary encoding: the metric columns are distinct floats, which pyarrow would first try to
            # dictionary-encode and then fall back (a third of the write time, larger files); one thread: the
            # conversion of a chunk is too short for a thread pool to pay
            table = pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)
            pq.write_table(table, tmp, use_dictionary=False)
            self._hook(PAUSE_IN_CHUNK, self._written + 1)
        side["metrics_sha256"] = sha256_file(path)
        _write_json(_file(folder, "chunk", i, "json"), side)
        self._written += 1
        self._hook(STOP_AFTER_CHUNKS, self._written)
        return table

    @staticmethod
    def _hook(name, count):
        value = os.environ.get(name)
        if value is None or int(value) != count:
            return
        if name == STOP_AFTER_CHUNKS:
            os.kill(os.getpid(), signal.SIGKILL)
        print(f"csfpk test hook: paused in chunk {count}", file=sys.stderr, flush=True)
        time.sleep(3600)

    def read_metrics(self, record, columns=None, tables=None):
        """The scenario's per-subject metrics as written so far (all chunks, in subject order)."""
        return read_metrics(self.path, self.manifest, record, columns, tables)

    def read_curves(self, record, output=None):
        return read_curves(self.path, self.manifest, record, output)

    # ------------------------------------------------------------------ finishing
    def summary_path(self, name):
        """Where the summary file ``name`` (``summary.csv``, ``summary.png`` …) goes."""
        return os.path.join(self.path, name)

    def complete(self):
        """Record the summary files' checksums, mark the manifest complete and, when overwriting, swap in.

        Called after summary.csv, curves_summary.csv and summary.png are written.
        """
        files = {}
        for name in (SUMMARY, CURVES_SUMMARY, SUMMARY_PNG):
            p = os.path.join(self.path, name)
            if os.path.isfile(p):
                files[name] = sha256_file(p)
        man = dict(self.manifest, status="complete", files=files, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _write_json(os.path.join(self.path, MANIFEST), man)
        self.manifest = plain(man)
        if self.path != self.out:
            self._swap()

    def _swap(self):
        """Replace ``out`` by the finished build folder; keep the old folder's other entries."""
        parent, name = os.path.split(self.out)
        trash = tempfile.mkdtemp(prefix=f".{name}.csfpk-old-", dir=parent)
        os.rmdir(trash)
        os.rename(self.out, trash)
        os.rename(self.path, self.out)
        for entry in os.listdir(trash):
            if entry not in FORMAT_ENTRIES and not _TEMP.match(entry):
                os.rename(os.path.join(trash, entry), os.path.join(self.out, entry))
        shutil.rmtree(trash)
        self.path = self.out


def _file(folder, kind, i, ext):
    return os.path.join(folder, f"{kind}-{i:06d}.{ext}")


def _has_doses(record):
    """Whether the scenario's chunks carry a dose timeline file (escalation scenarios)."""
    return bool(record.get("escalation"))


def _check_chunk(folder, record, i, start, stop, man, subjects=False):
    """Raise ``RunFolderError`` unless chunk ``i`` holds exactly subjects ``[start, stop)`` unchanged."""
    where = f"{folder}: chunk {i} of scenario {record['id']!r}"
    hint = "the folder was changed after it was written; rerun with --overwrite"
    try:
        side = _read_json(_file(folder, "chunk", i, "json"))
    except FileNotFoundError:
        raise RunFolderError(f"{where} is missing; {hint}") from None
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{where}: its record is unreadable ({exc}); {hint}") from None
    if side.get("run_hash") != man["run_hash"] or side.get("key") != record["key"]:
        raise RunFolderError(f"{where} belongs to another run (run hash {side.get('run_hash')}, scenario "
                             f"{side.get('key')}); {hint}")
    if side.get("start") != start or side.get("stop") != stop or side.get("rows") != stop - start:
        raise RunFolderError(f"{where} holds subjects {side.get('start')}..{side.get('stop')} where "
                             f"{start}..{stop} belong; {hint}")
    kinds = [("metrics", "parquet")] + ([("curves", "npy")] if man["curves"] else []) \
        + ([("doses", "parquet")] if _has_doses(record) else [])
    for kind, ext in kinds:
        path = _file(folder, kind, i, ext)
        if not os.path.isfile(path):
            raise RunFolderError(f"{where}: {os.path.basename(path)} is missing; {hint}")
        if sha256_file(path) != side.get(f"{kind}_sha256"):
            raise RunFolderError(f"{where}: {os.path.basename(path)} does not match its checksum; {hint}")
    if subjects:
        import numpy as np
        import pyarrow.parquet as pq

        got = pq.read_table(_file(folder, "metrics", i, "parquet"), columns=["subject"]).column(0).to_numpy()
        if not np.array_equal(got, np.arange(start, stop)):
            raise RunFolderError(f"{where}: its rows are not subjects {start}..{stop}; {hint}")


# ---------------------------------------------------------------------- reading
def read_run(path):
    """Read and verify a finished run folder; return its manifest (plain data).

    Raises ``RunFolderError`` (one line) when ``path`` is not a finished, unchanged csfpk run folder.
    """
    path = os.path.abspath(os.fspath(path))
    hint = "expected a run folder written by 'csfpk compare SWEEP --out DIR'"
    if not os.path.isdir(path):
        raise RunFolderError(f"{path!r} is not a folder; {hint}")
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        raise RunFolderError(f"{path!r} has no {MANIFEST}; {hint}")
    try:
        man = _read_json(mpath)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{mpath}: unreadable ({exc}); {hint}") from None
    if not isinstance(man, dict) or man.get("schema") != SCHEMA:
        raise RunFolderError(f"{mpath}: schema = {man.get('schema') if isinstance(man, dict) else None!r}; "
                             f"expected {SCHEMA!r}")
    if man.get("status") != "complete":
        raise RunFolderError(f"{path!r} is an unfinished run (status {man.get('status')!r}); finish it by running the "
                             "same csfpk compare command again")
    records = man.get("scenarios")
    changed = "the manifest was changed after the run; rerun with --overwrite"
    if not isinstance(records, list) or not records or digest(records) != man.get("spec_hash") \
            or man.get("run_hash") != run_hash(man):
        raise RunFolderError(f"{mpath}: its scenarios, chunk size or curves do not match its hashes; {changed}")
    chunk = man["chunk"]
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise RunFolderError(f"{mpath}: chunk = {chunk!r}; {changed}")
    for rec in records:
        key = rec.get("key")
        body = {k: v for k, v in rec.items() if k not in ("id", "key")}
        if not isinstance(key, str) or not _KEY.match(key) or key in (".", "..") \
                or not key.endswith("-" + digest(body, 12)):
            raise RunFolderError(f"{mpath}: scenario key {key!r} does not name its record; {changed}")
        folder = os.path.join(path, SCENARIOS, key)
        for i, a, b in chunk_plan(rec["population"]["n"], chunk):
            _check_chunk(folder, rec, i, a, b, man, subjects=True)
    for name, want in man.get("files", {}).items():
        p = os.path.join(path, name)
        if name not in (SUMMARY, CURVES_SUMMARY, SUMMARY_PNG) or not os.path.isfile(p) or sha256_file(p) != want:
            raise RunFolderError(f"{path!r}: {name} is missing or changed since the run; rerun with --overwrite")
    if SUMMARY not in man.get("files", {}):
        raise RunFolderError(f"{path!r}: the manifest records no {SUMMARY}; {changed}")
    return man


def read_metrics(path, man, record, columns=None, tables=None):
    """Per-subject metrics of one scenario of a run folder, chunks in subject order (pandas).

    ``tables``: chunk index → the Arrow table ``RunWriter.write_chunk`` returned for it (with at least
    ``columns``), used instead of reading that chunk's file: the writer's own summaries read back only the
    chunks of an earlier, resumed session."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = os.path.join(path, SCENARIOS, record["key"])
    tables = tables or {}
    parts = []
    for i, _, _ in chunk_plan(record["population"]["n"], man["chunk"]):
        if i in tables:
            parts.append(tables[i] if columns is None else tables[i].select(columns))
        else:
            parts.append(pq.read_table(_file(folder, "metrics", i, "parquet"), columns=columns))
    return pa.concat_tables(parts).to_pandas()  # one conversion: a third of the time of concatenating frames


def read_doses(path, man, record):
    """The dose timeline of one escalation scenario (subject, injection, time_h, dose_mg, action), in subject order."""
    import pandas as pd
    import pyarrow.parquet as pq

    if not _has_doses(record):
        raise RunFolderError(f"scenario {record['id']!r} is not an escalation scenario; its run folder holds no dose "
                             "timeline files")
    folder = os.path.join(path, SCENARIOS, record["key"])
    parts = [pq.read_table(_file(folder, "doses", i, "parquet")).to_pandas()
             for i, _, _ in chunk_plan(record["population"]["n"], man["chunk"])]
    return pd.concat(parts, ignore_index=True)


def read_curves(path, man, record, output=None):
    """Downsampled curves of one scenario (subjects × times × outputs, or × times for ``output`` index)."""
    import numpy as np

    folder = os.path.join(path, SCENARIOS, record["key"])
    parts = []
    for i, _, _ in chunk_plan(record["population"]["n"], man["chunk"]):
        cur = np.load(_file(folder, "curves", i, "npy"))
        parts.append(cur if output is None else cur[:, :, output])
    return np.concatenate(parts)


def metric_columns(path, man, record):
    """Column names of a scenario's per-subject metrics (from the first chunk's Parquet schema)."""
    import pyarrow.parquet as pq

    return pq.read_schema(_file(os.path.join(path, SCENARIOS, record["key"]), "metrics", 0, "parquet")).names
