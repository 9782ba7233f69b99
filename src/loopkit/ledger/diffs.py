"""`loopkit diff`: read two runs, two batches or two spec versions from the ledger and compare them.

The SQL lives here; what counts as a regression, the matching of cases and the metric deltas live
in `loopkit.diffing` (pure functions). Each `diff_*` function returns one JSON-ready document.

An A/B batch holds two variants: `ID:A` / `ID:B` picks one, and the same A/B batch given twice
without a variant compares its variant A with its variant B.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import diffing
from ..errors import LedgerError, UsageError
from .store import Ledger

__all__ = ["DiffSide", "diff", "diff_batches", "diff_runs", "diff_specs", "is_spec_path", "spec_hash_of_text"]

# Columns a batch diff needs; outputs and case data stay in the file.
_RUN_COLUMNS = "id, variant, case_id, repeat, status, stop_reason, success, reward, iterations, cost_usd"

SPEC_SUFFIXES = (".yaml", ".yml")


def spec_hash_of_text(text: str) -> str:
    """The ledger's spec version id: `LoopSpec.hash`, sha256 of the text, 16 hex digits."""
    import hashlib  # only a diff of spec files needs it; loading OpenSSL's bindings is most of `diff`'s imports

    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_spec_path(arg: str) -> bool:
    """A diff argument names a spec file (rather than an ID) when it looks like a path or is a file."""
    return arg.lower().endswith(SPEC_SUFFIXES) or "/" in arg or "\\" in arg or Path(arg).is_file()


# --- sides ---------------------------------------------------------------------------------


class DiffSide:
    """One side of a batch diff: a batch, or one variant of an A/B batch."""

    def __init__(self, batch: dict[str, Any], variant: str | None = None) -> None:
        self.batch = batch
        self.variant = variant

    @property
    def id(self) -> str:
        return str(self.batch["id"])

    @property
    def spec_hash(self) -> str | None:
        if self.variant == "B" and self.batch.get("spec_hash_b"):
            return self.batch["spec_hash_b"]
        return self.batch.get("spec_hash")

    @property
    def label(self) -> str:
        return self.id[:10] + (f":{self.variant}" if self.variant else "")

    def describe(self, ledger: Ledger) -> dict[str, Any]:
        spec = ledger.one("SELECT name FROM specs WHERE hash=?", (self.spec_hash,)) if self.spec_hash else None
        if spec is None:  # a spec text the ledger lacks: the name its runs were written with
            spec = ledger.one("SELECT MIN(NULLIF(spec_name, '')) AS name FROM runs WHERE batch_id=?1 AND (?2 IS NULL OR variant=?2)",
                              (self.id, self.variant))
        return {"batch_id": self.id, "variant": self.variant, "kind": self.batch.get("kind"), "status": self.batch.get("status"),
                "started_at": self.batch.get("started_at"), "spec_hash": self.spec_hash, "spec_name": (spec or {}).get("name")}


def _split_variant(arg: str) -> tuple[str, str | None]:
    head, sep, tail = arg.rpartition(":")
    if sep and tail.upper() in ("A", "B") and head:
        return head, tail.upper()
    return arg, None


def _side_rows(ledger: Ledger, side: DiffSide) -> list[dict[str, Any]]:
    sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE batch_id=?"
    args: list[Any] = [side.id]
    if side.variant is not None:
        sql += " AND variant=?"
        args.append(side.variant)
    return ledger.query(sql, args)


def _latencies(ledger: Ledger, batch_id: str) -> dict[str, float]:
    """Run id → the sum of its calls' latency_ms, for every run of a batch (one indexed pass)."""
    return {run_id: float(ms or 0.0) for run_id, ms in ledger.tuples(
        "SELECT run_id, SUM(latency_ms) FROM calls WHERE batch_id=? GROUP BY run_id", (batch_id,))}


def _spec_section(ledger: Ledger | None, a_hash: str | None, b_hash: str | None, a_name: str, b_name: str,
                  *, a_text: str | None = None, b_text: str | None = None) -> dict[str, Any]:
    """The spec part of any diff: same version or not, and the unified diff of the YAML text."""
    if a_text is None and ledger is not None and a_hash:
        a_text = (ledger.spec_text(a_hash) or {}).get("yaml")
    if b_text is None and ledger is not None and b_hash:
        b_text = (ledger.spec_text(b_hash) or {}).get("yaml")
    same = a_hash == b_hash if a_hash and b_hash else (a_text is not None and a_text == b_text)
    return {"same": same, "a_hash": a_hash, "b_hash": b_hash,
            "diff": [] if same else diffing.text_diff(a_text, b_text, a_name, b_name),
            "text_missing": [name for name, text in ((a_name, a_text), (b_name, b_text)) if text is None]}


# --- batches -------------------------------------------------------------------------------


def diff_batches(ledger: Ledger, a: DiffSide, b: DiffSide, *, cases_per_class: int | None = None) -> dict[str, Any]:
    """Two batches (or variants): spec diff, metric deltas, and every case matched by (case_id, repeat);
    with `cases_per_class`, the cases listed are only the first of each class (all are counted).

    Both sides being whole A/B batches matches cases per variant too.
    """
    a_rows, b_rows = _side_rows(ledger, a), _side_rows(ledger, b)
    a_lat = _latencies(ledger, a.id)
    b_lat = a_lat if b.id == a.id else _latencies(ledger, b.id)
    by_variant = a.variant is None and b.variant is None and a.batch.get("kind") == "ab" and b.batch.get("kind") == "ab"
    if by_variant:
        cases, changes = [], dict.fromkeys(diffing.CHANGE_ORDER, 0)
        for variant in ("A", "B"):
            va = [r for r in a_rows if r.get("variant") == variant]
            vb = [r for r in b_rows if r.get("variant") == variant]
            found, counts = diffing.matched_cases(va, vb, a_latency=a_lat, b_latency=b_lat, per_class=cases_per_class)
            cases += [{**c, "variant": variant} for c in found]
            changes = {k: changes[k] + counts[k] for k in changes}
        # class by class, variant A's cases before B's; each variant kept `cases_per_class` of a class, so cut again
        by_change: dict[str, list[dict[str, Any]]] = {change: [] for change in diffing.CHANGE_ORDER}
        for case in cases:
            by_change[case["change"]].append(case)
        cases = [case for group in by_change.values() for case in group[:cases_per_class]]
    else:
        cases, changes = diffing.matched_cases(a_rows, b_rows, a_latency=a_lat, b_latency=b_lat, per_class=cases_per_class)
    a_info, b_info = a.describe(ledger), b.describe(ledger)
    return {
        "kind": "batches",
        "a": a_info,
        "b": b_info,
        "spec": _spec_section(ledger, a.spec_hash, b.spec_hash, f"a/{a_info['spec_name'] or 'spec'}.yaml ({a.label})",
                              f"b/{b_info['spec_name'] or 'spec'}.yaml ({b.label})"),
        "metrics": diffing.metric_deltas(diffing.batch_metrics(a_rows, a_lat), diffing.batch_metrics(b_rows, b_lat)),
        "changes": changes,
        "regressions": changes["regression"],
        "cases": cases,
    }


# --- runs ----------------------------------------------------------------------------------


def _run_side(detail: dict[str, Any], latency_ms: float) -> dict[str, Any]:
    keys = ("batch_id", "spec_name", "spec_hash", "variant", "case_id", "repeat", "status", "stop_reason", "reward",
            "best_iteration", "output", "cost_usd", "prompt_tokens", "completion_tokens", "started_at", "ended_at")
    return {"run_id": detail["id"], **{k: detail.get(k) for k in keys}, "success": bool(detail.get("success")),
            "iterations": len(detail["iterations"]), "latency_ms": latency_ms, "case": detail.get("case")}


def diff_runs(ledger: Ledger, a_id: str, b_id: str) -> dict[str, Any]:
    """Two runs: the spec diff, the case, and their iterations side by side with checker score changes."""
    a, b = ledger.run_detail(a_id), ledger.run_detail(b_id)
    a_side = _run_side(a, sum(float(c.get("latency_ms") or 0.0) for c in a["calls"]))
    b_side = _run_side(b, sum(float(c.get("latency_ms") or 0.0) for c in b["calls"]))
    change = diffing.classify(a_side, b_side)
    return {
        "kind": "runs",
        "a": a_side,
        "b": b_side,
        "spec": _spec_section(ledger, a.get("spec_hash"), b.get("spec_hash"), f"a/{a.get('spec_name')}.yaml ({a_id[:10]})",
                              f"b/{b.get('spec_name')}.yaml ({b_id[:10]})"),
        "case_same": a.get("case") == b.get("case"),
        "change": change,
        "regressions": int(change == "regression"),
        "delta": {k: (None if a_side[k] is None or b_side[k] is None else float(b_side[k]) - float(a_side[k]))
                  for k in ("reward", "cost_usd", "iterations", "latency_ms")},
        "iterations": diffing.iteration_pairs(a["iterations"], b["iterations"]),
    }


# --- spec files ----------------------------------------------------------------------------


def _read_spec(path: Path) -> str:
    """The spec's text exactly as `load_spec` reads it (UTF-8, a BOM dropped, line ends kept), so
    its hash is `LoopSpec.hash` without importing the validator."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a spec file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def latest_batch_of_spec(ledger: Ledger, spec_hash: str) -> DiffSide | None:
    """The newest batch that ran this spec version and recorded runs (an A/B batch: the variant that did)."""
    row = ledger.one(
        "SELECT * FROM batches WHERE (spec_hash=? OR spec_hash_b=?) AND EXISTS (SELECT 1 FROM runs WHERE runs.batch_id=batches.id) "
        "ORDER BY started_at DESC LIMIT 1", (spec_hash, spec_hash))
    if row is None:
        return None
    variant = None
    if row.get("kind") == "ab":
        variant = "A" if row.get("spec_hash") == spec_hash else "B"
    return DiffSide(row, variant)


def diff_specs(ledger: Ledger | None, a_path: str | Path, b_path: str | Path, *, cases_per_class: int | None = None,
               ) -> dict[str, Any]:
    """Two spec files: their text diff, and a diff of the latest batch of each version (by content hash).

    `ledger` may be None (no ledger yet): then only the text is compared.
    """
    a_path, b_path = Path(a_path), Path(b_path)
    a_text, b_text = _read_spec(a_path), _read_spec(b_path)
    a_hash, b_hash = spec_hash_of_text(a_text), spec_hash_of_text(b_text)
    doc: dict[str, Any] = {
        "kind": "specs",
        "a": {"path": str(a_path), "hash": a_hash, "batch_id": None, "variant": None},
        "b": {"path": str(b_path), "hash": b_hash, "batch_id": None, "variant": None},
        "spec": _spec_section(None, a_hash, b_hash, str(a_path), str(b_path), a_text=a_text, b_text=b_text),
        "batches": None,
        "missing": [],
        "regressions": 0,
    }
    sides = []
    for key, path, spec_hash in (("a", a_path, a_hash), ("b", b_path, b_hash)):
        side = latest_batch_of_spec(ledger, spec_hash) if ledger is not None else None
        if side is None:
            doc["missing"].append(f"no batch of {path} (version {spec_hash}) in the ledger: run `loopkit run {path}`")
        else:
            doc[key]["batch_id"], doc[key]["variant"] = side.id, side.variant
        sides.append(side)
    if ledger is not None and sides[0] is not None and sides[1] is not None:
        doc["batches"] = diff_batches(ledger, sides[0], sides[1], cases_per_class=cases_per_class)
        doc["regressions"] = doc["batches"]["regressions"]
    return doc


# --- entry point ---------------------------------------------------------------------------


def _resolve_side(ledger: Ledger, arg: str) -> tuple[str, str, str | None]:
    """(kind, full id, variant) for a diff argument: an ID prefix, optionally `:A` / `:B`."""
    prefix, variant = _split_variant(arg)
    kind, full = ledger.resolve(prefix)
    if variant is not None:
        batch = ledger.batch(full) if kind == "batch" else None
        if batch is None or batch.get("kind") != "ab":
            raise UsageError(f"{arg}: :{variant} picks a variant of an A/B batch, and {prefix} is not one")
    return kind, full, variant


def diff(ledger_path: str | Path | None, a: str, b: str, *, cases_per_class: int | None = None) -> dict[str, Any]:
    """`loopkit diff A B`: two spec files, two runs, or two batches (IDs by unique prefix). `cases_per_class`:
    list only the first cases of each class of change (a terminal's view; every case is still counted)."""
    a_spec, b_spec = is_spec_path(a), is_spec_path(b)
    if a_spec or b_spec:
        if not (a_spec and b_spec):
            raise UsageError("diff compares two spec files, two runs or two batches; got a spec file and an ID")
        try:
            ledger: Ledger | None = Ledger(ledger_path, readonly=True)
        except LedgerError:
            ledger = None  # no ledger yet: the text diff still answers
        try:
            return diff_specs(ledger, a, b, cases_per_class=cases_per_class)
        finally:
            if ledger is not None:
                ledger.close()
    with Ledger(ledger_path, readonly=True) as store:
        a_kind, a_id, a_var = _resolve_side(store, a)
        b_kind, b_id, b_var = _resolve_side(store, b)
        if a_kind != b_kind:
            raise UsageError(f"{a} is a {a_kind} and {b} is a {b_kind}: diff two runs or two batches")
        if a_kind == "run":
            return diff_runs(store, a_id, b_id)
        a_batch, b_batch = store.batch(a_id), store.batch(b_id)
        assert a_batch is not None and b_batch is not None
        if a_id == b_id and a_var is None and b_var is None and a_batch.get("kind") == "ab":
            a_var, b_var = "A", "B"  # the same A/B batch twice: its variant A against its variant B
        for arg, batch, var in ((a, a_batch, a_var), (b, b_batch, b_var)):
            other = b_batch if batch is a_batch else a_batch
            if batch.get("kind") == "ab" and var is None and other.get("kind") != "ab":
                raise UsageError(f"{arg} is an A/B batch: name a variant, {arg}:A or {arg}:B")
        return diff_batches(store, DiffSide(a_batch, a_var), DiffSide(b_batch, b_var), cases_per_class=cases_per_class)
