"""Baselines: counts, fingerprints and per-row hashes saved to a file, and compared with the database.

The file is JSON Lines: a header object (format, version, database vendor, and each
table's count and fingerprint), then one `[model label, pk, row hash]` array per row,
grouped by table in header order and sorted by primary key. Writing and comparing
stream the rows, so memory stays flat at any table size; the row-by-row diff runs only
for tables whose fingerprint changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import connections, models
from django.utils import timezone

from deployguard import files
from deployguard.fingerprint import ADDED, CHANGED, REMOVED, diff_row_hashes, fingerprint_table, row_hashes

FORMAT = "deployguard-baseline"
VERSION = 1
LISTED_PKS = 1000
MAX_BYTES = 4 * files.GiB
"""The largest baseline read: about 60 bytes a row, so some 70 million rows."""


class BaselineError(Exception):
    """The baseline file cannot be used: missing, unreadable, corrupt, or from another database."""


def save(path: str | Path, tables: Sequence[type[models.Model]], *, using: str = "default") -> dict[str, Any]:
    """Write the baseline of `tables` to `path` (atomically: a temporary file, then a rename)."""
    path = Path(path)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "vendor": connections[using].vendor,
        "created_at": timezone.now().isoformat(),
        "tables": {
            model._meta.label_lower: fingerprint_table(model, using=using).as_dict() for model in tables
        },
    }
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as out:
            out.write(json.dumps(header) + "\n")
            for model in tables:
                label = model._meta.label_lower
                for pk, row_hash in row_hashes(model, using=using):
                    out.write(json.dumps([label, pk, row_hash]) + "\n")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise BaselineError(f"Cannot write the baseline {path}: {error.strerror or error}.") from error
    return header


@dataclass
class PkList:
    count: int = 0
    pks: list[Any] = field(default_factory=list)

    def add(self, pk: Any) -> None:
        self.count += 1
        if len(self.pks) < LISTED_PKS:
            self.pks.append(pk)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "pks": self.pks}


@dataclass
class TableDiff:
    label: str
    count_then: int
    count_now: int
    fingerprint_then: str
    fingerprint_now: str
    added: PkList = field(default_factory=PkList)
    removed: PkList = field(default_factory=PkList)
    changed: PkList = field(default_factory=PkList)

    @property
    def equal(self) -> bool:
        return self.count_then == self.count_now and self.fingerprint_then == self.fingerprint_now

    def as_dict(self) -> dict[str, Any]:
        return {
            "count_then": self.count_then,
            "count_now": self.count_now,
            "fingerprint_then": self.fingerprint_then,
            "fingerprint_now": self.fingerprint_now,
            "equal": self.equal,
            "added": self.added.as_dict(),
            "removed": self.removed.as_dict(),
            "changed": self.changed.as_dict(),
        }


@dataclass
class Comparison:
    path: str
    created_at: str
    tables: list[TableDiff]
    untracked: list[str]

    @property
    def ok(self) -> bool:
        return all(table.equal for table in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "created_at": self.created_at,
            "ok": self.ok,
            "tables": {table.label: table.as_dict() for table in self.tables},
            "untracked": self.untracked,
        }


def _read_header(lines: Iterator[str], path: Path, vendor: str) -> dict[str, Any]:
    try:
        header = json.loads(next(lines))
    except (StopIteration, ValueError):
        raise BaselineError(f"{path} is not a baseline: its first line is not a JSON header.") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BaselineError(f"{path} is not a baseline written by verify_integrity --save-baseline.")
    if header.get("version") != VERSION:
        raise BaselineError(f"{path} is baseline version {header.get('version')}; this reads {VERSION}.")
    if header.get("vendor") != vendor:
        raise BaselineError(
            f"{path} was saved on {header.get('vendor')}, not {vendor}: row hashes differ between databases."
        )
    if not isinstance(header.get("tables"), dict):
        raise BaselineError(f"{path} has no table list in its header.")
    return header


def compare(path: str | Path, tables: Sequence[type[models.Model]], *, using: str = "default") -> Comparison:
    """Compare the database with the baseline at `path`: counts, fingerprints, then rows by pk."""
    path = Path(path)
    by_label = {model._meta.label_lower: model for model in tables}
    try:
        with files.open_regular(path, what="the baseline", max_bytes=MAX_BYTES) as handle:
            return _compare(path, files.lines(handle, what="the baseline", path=path), by_label, using=using)
    except files.BadFile as error:
        raise BaselineError(str(error)) from None
    except OSError as error:
        raise BaselineError(f"Cannot read the baseline {path}: {error.strerror or error}.") from error


def _compare(
    path: Path, lines: Iterator[str], by_label: dict[str, type[models.Model]], *, using: str
) -> Comparison:
    header = _read_header(lines, path, connections[using].vendor)
    pending: list[Any] | None = None

    def baseline_rows(label: str) -> Iterator[tuple[Any, int]]:
        nonlocal pending
        while True:
            if pending is None:
                try:
                    line = next(lines)
                except StopIteration:
                    return
                try:
                    pending = json.loads(line)
                    row_label, pk, row_hash = pending
                except (ValueError, TypeError):
                    raise BaselineError(f"{path} is corrupt: bad row line {line[:80]!r}.") from None
            row_label, pk, row_hash = pending
            if row_label != label:
                return
            pending = None
            yield pk, row_hash

    diffs, untracked = [], []
    for label, saved in header["tables"].items():
        model = by_label.get(label)
        if model is None:
            untracked.append(label)
            for _ in baseline_rows(label):  # skip this table's lines in the file
                pass
            continue
        current = fingerprint_table(model, using=using)
        try:
            diff = TableDiff(
                label=label,
                count_then=int(saved["count"]),
                count_now=current.count,
                fingerprint_then=str(saved["digest"]),
                fingerprint_now=current.digest,
            )
        except (KeyError, TypeError, ValueError):
            raise BaselineError(f"{path} is corrupt: the header entry for {label} is incomplete.") from None
        if diff.equal:
            for _ in baseline_rows(label):
                pass
        else:
            listed = {ADDED: diff.added, REMOVED: diff.removed, CHANGED: diff.changed}
            for kind, pk in diff_row_hashes(baseline_rows(label), row_hashes(model, using=using)):
                listed[kind].add(pk)
        diffs.append(diff)
    untracked += [label for label in by_label if label not in header["tables"]]
    return Comparison(
        path=str(path), created_at=str(header.get("created_at")), tables=diffs, untracked=untracked
    )
