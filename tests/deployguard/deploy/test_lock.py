"""One deploy at a time: the second is refused at once, naming the one that holds the lock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.utils import timezone

from deployguard.deploy import lock
from deployguard.deploy.steps import EXIT_PRECHECK, Stop
from deployguard.models import DeployRecord


@pytest.fixture
def locks(db, tmp_path, monkeypatch) -> Iterator[tuple[lock.DeployLock, lock.DeployLock]]:
    """Two deploys' locks on the test database (on SQLite, a lock file beside a database file)."""
    if connection.vendor == "sqlite":
        monkeypatch.setitem(connection.settings_dict, "NAME", str(tmp_path / "db.sqlite3"))
    first, second = lock.DeployLock(), lock.DeployLock()
    yield first, second
    first.release()
    second.release()


def test_a_second_deploy_cannot_take_the_lock_and_names_the_first(locks):
    first, second = locks

    assert first.acquire("d-1", "ops@host")
    assert not second.acquire("d-2", "dev@laptop")
    assert second.holder().startswith("deploy d-1, started ")
    assert second.holder().endswith(" by ops@host")
    with pytest.raises(Stop) as stopped:
        lock.take(second, deploy_id="d-2", actor="dev@laptop")

    assert stopped.value.exit_status == EXIT_PRECHECK
    assert stopped.value.message == lock.ANOTHER_DEPLOY.format(who=second.holder())


def test_the_lock_is_free_again_once_released(locks):
    first, second = locks
    assert first.acquire("d-1", "ops@host")

    first.release()

    assert second.holder() == ""
    assert second.acquire("d-2", "dev@laptop")


def test_a_running_deploy_is_named_from_its_record_when_it_has_one(locks):
    first, second = locks
    assert first.acquire("d-1", "ops@host")
    started = timezone.now()
    DeployRecord.objects.create(deploy_id="d-1", started_at=started, started_by="ops@host")

    assert lock.running_deploy(second) == f"deploy d-1, started {started:%Y-%m-%d %H:%M:%S} by ops@host"


def test_every_path_to_the_same_sqlite_file_takes_the_same_lock(tmp_path):
    database = tmp_path / "db.sqlite3"
    database.write_bytes(b"")
    (tmp_path / "link.sqlite3").symlink_to(database)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link.sqlite3").symlink_to(database)
    (tmp_path / "other.sqlite3").write_bytes(b"")

    paths = {
        lock.lock_path_for(str(p))
        for p in (database, tmp_path / "link.sqlite3", tmp_path / "elsewhere/link.sqlite3")
    }

    assert len(paths) == 1
    assert lock.lock_path_for(str(tmp_path / "other.sqlite3")) not in paths
