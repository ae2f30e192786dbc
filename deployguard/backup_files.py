"""The backups on disk: list them with what their manifests say, and prune the old ones.

A backup is a file with its manifest beside it (backup.py makes them). Listing checks each
file against its manifest's SHA-256; pruning removes only backups that still match, never
the newest, and never one a `DeployRecord` names as its restore point.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from deployguard import delta_pg
from deployguard.backup import MANIFEST_SUFFIX, Manifest, RestoreRefused, delta_of, sha256_of
from deployguard.models import DeployRecord

# What listing found of a backup: its checksum still matches, it does not, or half is missing.
VERIFIED = "verified"
CHANGED = "checksum differs"
NO_FILE = "incomplete: no backup file"
NO_MANIFEST = "incomplete: no manifest"
UNREADABLE = "unreadable manifest"


@dataclass
class BackupFile:
    path: Path
    state: str
    manifest: Manifest | None = None
    restore_point_of: list[str] = field(default_factory=list)

    @property
    def created_at(self) -> datetime | None:
        if self.manifest is None:
            return None
        try:
            return datetime.fromisoformat(self.manifest.created_at)
        except (TypeError, ValueError):
            return None

    @property
    def rows(self) -> int:
        if self.manifest is None:
            return 0
        return sum(int(fp.get("count", 0)) for fp in self.manifest.fingerprints.values())

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    @property
    def verified(self) -> bool:
        return self.state == VERIFIED


def _backup_of(manifest: Path) -> Path:
    return manifest.with_name(manifest.name[: -len(MANIFEST_SUFFIX)])


def restore_points() -> dict[Path | str, list[str]]:
    """{backup path, resolved, and its file name: ids of the deploys whose record names it}.
    The file name too, since a record may hold a path relative to another directory: a
    backup of the same name is kept rather than a restore point lost."""
    named: dict[Path | str, list[str]] = {}
    records = DeployRecord.objects.exclude(backup_path="").values_list("deploy_id", "backup_path")
    for deploy_id, path in records:
        for key in (Path(path).resolve(), Path(path).name):
            named.setdefault(key, []).append(deploy_id)
    return named


def list_backups(directory: Path, *, progress: Callable[[int, int], None] | None = None) -> list[BackupFile]:
    """Every backup in `directory`, oldest first (those without a readable time first), each
    checked against its manifest. `progress(done, total)` is called as the files are hashed."""
    if not directory.is_dir():
        return []
    names = sorted(entry.name for entry in os.scandir(directory) if not entry.name.startswith("."))
    manifests = [directory / name for name in names if name.endswith(MANIFEST_SUFFIX)]
    described = {_backup_of(path) for path in manifests}
    lone = [
        directory / name
        for name in names
        if not name.endswith(MANIFEST_SUFFIX)
        and directory / name not in described
        and directory / name.removesuffix(delta_pg.SUFFIX) not in described  # a backup's delta
        and (directory / name).is_file()
    ]
    points = restore_points()
    found: list[BackupFile] = []
    for done, manifest_file in enumerate(manifests, start=1):
        found.append(_check(_backup_of(manifest_file), points))
        if progress:
            progress(done, len(manifests))
    found += [BackupFile(path=path, state=NO_MANIFEST) for path in lone]
    return sorted(found, key=lambda b: (b.created_at is not None, b.created_at or datetime.min, b.path.name))


def _check(path: Path, points: dict[Path | str, list[str]]) -> BackupFile:
    try:
        manifest = Manifest.read(path)
    except RestoreRefused:
        return BackupFile(path=path, state=UNREADABLE)
    if not _well_formed(manifest):
        return BackupFile(path=path, state=UNREADABLE)
    found = BackupFile(path=path, state=VERIFIED, manifest=manifest)
    found.restore_point_of = sorted(set(points.get(path.resolve(), []) + points.get(path.name, [])))
    if not path.is_file():
        found.state = NO_FILE
    elif sha256_of(path) != manifest.sha256:
        found.state = CHANGED
    else:
        try:
            delta_of(path, manifest)
        except RestoreRefused:  # its delta (deployguard.delta_pg) is missing or changed
            found.state = CHANGED
    return found


def _well_formed(manifest: Manifest) -> bool:
    """The fields listing reads have the types backup_db writes (a manifest is a file anyone may edit)."""
    fingerprints = manifest.fingerprints
    return (
        isinstance(fingerprints, dict)
        and all(isinstance(fp, dict) and isinstance(fp.get("count", 0), int) for fp in fingerprints.values())
        and all(isinstance(value, str) for value in (manifest.sha256, manifest.engine, manifest.created_at))
    )


@dataclass
class PrunePlan:
    remove: list[BackupFile]
    keep: list[BackupFile]
    # Kept although beyond --keep: a deploy's restore point.
    protected: list[BackupFile]


def plan_prune(backups: Iterable[BackupFile], *, keep: int) -> PrunePlan:
    """Which verified backups go: all but the newest `keep` (at least 1), except restore points.
    Backups that do not verify are neither counted nor removed: a person should look at them."""
    if keep < 1:
        raise ValueError("--keep must be 1 or more: the newest backup is never pruned.")
    verified = [b for b in backups if b.verified and b.created_at is not None]
    newest_first = sorted(verified, key=lambda b: b.created_at or datetime.min, reverse=True)
    kept, beyond = newest_first[:keep], newest_first[keep:]
    protected = [b for b in beyond if b.restore_point_of]
    remove = [b for b in beyond if not b.restore_point_of]
    return PrunePlan(remove=remove[::-1], keep=kept, protected=protected)


def remove_backup(backup: BackupFile) -> None:
    """Delete the file (and the delta its manifest names), then its manifest: a backup file
    never stands without its manifest."""
    delta_pg.remove(backup.path, backup.manifest.extra if backup.manifest is not None else None)
    backup.path.unlink(missing_ok=True)
    backup.path.with_name(backup.path.name + MANIFEST_SUFFIX).unlink(missing_ok=True)
