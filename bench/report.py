"""Result rows and the markdown tables the benchmark prints."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .servers import LABELS


@dataclass
class Result:
    backend: str                 # pg | sqlite | mariadb
    dataset: str                 # events | orders
    kind: str                    # project (the user view) | reference | limit (a second reference) | warm
    label: str
    n: int                       # rows in the data set (all tables)
    rows: int | None = None      # rows archived, counted in the databases afterwards
    seconds: float | None = None
    peak_kb: int | None = None
    note: str = ""               # "" when the pipeline ran and moved exactly the expected rows
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.note.startswith(("failed", "MISMATCH"))

    @property
    def exact(self) -> bool:
        """Ran, and moved exactly the rows it had to (see datasets.check)."""
        return self.seconds is not None and not self.note

    @property
    def rate(self) -> float | None:
        return self.rows / self.seconds if self.rows and self.seconds else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(project: Result, reference: Result | None) -> float | None:
    """Project speed relative to the reference: reference seconds / project seconds, for the
    same rows (both checked exact); > 1 means the project is faster."""
    if reference is None or not (project.exact and reference.exact) or project.rows != reference.rows:
        return None
    return reference.seconds / project.seconds


def reference_for(results: list[Result], r: Result, kind: str = "reference") -> Result | None:
    return next((x for x in results if x.kind == kind and x.backend == r.backend
                 and x.dataset == r.dataset and x.n == r.n), None)


def _n(value: float | int | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _mb(kb: int | None) -> str:
    return "—" if not kb else f"{kb / 1024:.0f}"


def ratio_table(results: list[Result]) -> list[str]:
    """The headline: each project row (the user view) next to its reference, as a ratio."""
    lines = ["| backend | data set | project | rows moved | project s | reference | reference s | ratio "
             "| project peak MB | note |",
             "|---|---|---|---:|---:|---|---:|---:|---:|---|"]
    for r in results:
        if r.kind != "project":
            continue
        ref = reference_for(results, r)
        ref_label = ref.label if ref else "—"
        ref_seconds = _s(ref.seconds) if ref and ref.seconds is not None else (ref.note if ref else "not run")
        notes = [x for x in (r.note, f"reference: {ref.note}" if ref and ref.note and ref.seconds is not None
                             else "") if x]
        lines.append(f"| {LABELS[r.backend]} | {r.dataset} | {r.label} | {_n(r.rows)} | {_s(r.seconds)} | {ref_label} "
                     f"| {ref_seconds} | {_x(ratio(r, ref))} | {_mb(r.peak_kb)} | {'; '.join(notes)} |")
    return lines


def reference_table(results: list[Result]) -> list[str]:
    lines = ["| backend | data set | reference | rows moved | seconds | rows/s | note |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in results:
        if r.kind in ("reference", "limit"):
            lines.append(f"| {LABELS[r.backend]} | {r.dataset} | {r.label} | {_n(r.rows)} | {_s(r.seconds)} "
                         f"| {_n(r.rate)} | {r.note} |")
    return lines


def limit_table(results: list[Result]) -> list[str]:
    """Each project row of a backend with a second reference (kind ``limit``) next to it."""
    lines = ["| backend | data set | project | project s | limit | limit s | ratio |",
             "|---|---|---|---:|---|---:|---:|"]
    for r in results:
        limit = reference_for(results, r, "limit") if r.kind == "project" else None
        if limit is not None:
            shown = _s(limit.seconds) if limit.seconds is not None and not limit.note else limit.note
            lines.append(f"| {LABELS[r.backend]} | {r.dataset} | {r.label} | {_s(r.seconds)} | {limit.label} "
                         f"| {shown} | {_x(ratio(r, limit))} |")
    return lines


def warm_table(results: list[Result]) -> list[str]:
    lines = ["| backend | data set | project | rows moved | job s | rows/s | ratio to the reference | path "
             "| peak MB | note |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        if r.kind == "warm":
            lines.append(f"| {LABELS[r.backend]} | {r.dataset} | {r.label} | {_n(r.rows)} | {_s(r.seconds)} "
                         f"| {_n(r.rate)} | {_x(ratio(r, reference_for(results, r)))} | {r.extra.get('path', '—')} "
                         f"| {_mb(r.peak_kb)} | {r.note} |")
    return lines
