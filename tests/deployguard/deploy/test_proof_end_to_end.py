"""deploy_safe's proof end to end: what a migration changes behind a schema change, in the
bookkeeping tables, or by switching deploy mode off, fails the deploy and is put back."""

from __future__ import annotations

import pytest

from tests.deploy_apps.support import Scratch, manage_with_apps, table_rows

ITEMS = (
    "INSERT INTO reshape_item (name, size, obsolete) "
    "VALUES ('alpha', 1, 'x'), ('beta', 20, ''), ('gamma', 300, 'y')"
)


@pytest.fixture
def reshape_ready(scratch: Scratch) -> Scratch:
    """The reshape app migrated to 0001 (outside any deploy), with three rows."""
    migrated = manage_with_apps(scratch, "reshape", "migrate", "reshape", "0001", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    code = f"from django.db import connection\nwith connection.cursor() as c:\n    c.execute({ITEMS!r})"
    inserted = manage_with_apps(scratch, "reshape", "shell", "-c", code)
    assert inserted.returncode == 0, inserted.stderr
    return scratch


@pytest.mark.parametrize(
    ("how", "differs"),
    [
        ("rewrite", "reshape_item: values differ in the columns that survived (id, name, size): "
                    "3 rows both times, contents differ"),
        ("retype_lossy", "reshape_item: values differ in the columns that survived (id, name, size): "
                         "3 rows both times, contents differ; retyped size did not keep every value's text: "
                         "if a migration converts them on purpose, name it with --allow-data-migration "
                         "APP.NAME"),
    ],
)  # fmt: skip
def test_a_migration_that_drops_a_column_and_rewrites_another_fails_and_is_rolled_back(
    reshape_ready: Scratch, how: str, differs: str
):
    scratch = reshape_ready
    before, documents_before = table_rows(scratch, "reshape_item"), scratch.inspect()

    result = scratch.deploy(apps="reshape", DEPLOY_TEST_RESHAPE=how)

    assert result.returncode == 1, result.stdout + result.stderr
    assert table_rows(scratch, "reshape_item") == before
    after = scratch.inspect()
    assert after["fingerprints"] == documents_before["fingerprints"]
    assert after["migrations"]["reshape"] == ["0001_initial"]
    assert not after["deploy_mode"]
    report = scratch.report()
    assert report["status"] == "rolled_back"
    assert report["message"].endswith(f"Data changed during the deploy: {differs}")
    assert (
        "reshape_item: columns dropped obsolete; the surviving columns compared by value"
        in (report["schema_changes"])
    )


def test_a_migration_that_drops_a_column_and_keeps_every_other_value_deploys(reshape_ready: Scratch):
    scratch = reshape_ready
    before = table_rows(scratch, "reshape_item")

    result = scratch.deploy(apps="reshape", DEPLOY_TEST_RESHAPE="honest")

    assert result.returncode == 0, result.stdout + result.stderr
    assert scratch.report()["message"].endswith("migrated and verified.")
    assert "reshape_item: columns retyped size" in scratch.report()["schema_changes"]
    # The same rows, without the dropped column (SQLite: the values; PostgreSQL: ids).
    after = table_rows(scratch, "reshape_item")
    if scratch.url.startswith("sqlite"):
        assert after == [row[:3] for row in before]
    else:
        assert [row[0] for row in after] == [row[0] for row in before]


def test_a_rewrite_named_with_allow_data_migration_deploys_and_is_reported(reshape_ready: Scratch):
    scratch = reshape_ready

    result = scratch.deploy(
        "--allow-data-migration", "reshape.0002_reshape", apps="reshape", DEPLOY_TEST_RESHAPE="rewrite"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    changes = scratch.report()["data_migration_changes"]["reshape.0002_reshape"]
    assert changes["reshape_item"]["changed"] == [1, 2, 3]
