"""What a statement writes: the tokenizer that the write guard and the write-path audit share."""

from __future__ import annotations

import pytest

from deployguard import sql_writes
from deployguard.sql_writes import UNKNOWN_PART, UNKNOWN_TABLE, is_schema_change, write_targets


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ('INSERT INTO "auth_group" ("name") VALUES (%s)', [("INSERT", "auth_group")]),
        ("insert into auth_group (name) values ('x')", [("INSERT", "auth_group")]),
        ("  /* seeded */ -- note\n INSERT INTO auth_group (name) VALUES (%s)", [("INSERT", "auth_group")]),
        ("(INSERT INTO auth_group (name) VALUES (%s))", [("INSERT", "auth_group")]),
        ("INSERT OR REPLACE INTO auth_group (name) VALUES (%s)", [("INSERT", "auth_group")]),
        ("REPLACE INTO auth_group (name) VALUES (%s)", [("REPLACE", "auth_group")]),
        ('UPDATE "public"."auth_group" SET "name" = %s', [("UPDATE", "auth_group")]),
        ("update only auth_group set name = 'x'", [("UPDATE", "auth_group")]),
        ('DELETE FROM "auth_group" WHERE "id" IN (%s, %s)', [("DELETE", "auth_group")]),
        (
            "WITH moved AS (DELETE FROM auth_group RETURNING name) INSERT INTO auth_user (username) "
            "SELECT name FROM moved",
            [("DELETE", "auth_group"), ("INSERT", "auth_user")],
        ),
        ("with x as (select 1) insert into auth_group (name) select 'a' from x", [("INSERT", "auth_group")]),
        (
            "MERGE INTO auth_group g USING src s ON g.id = s.id WHEN MATCHED THEN DELETE",
            [("MERGE", "auth_group")],
        ),
        ("COPY auth_group (name) FROM STDIN", [("COPY", "auth_group")]),
        (
            "TRUNCATE TABLE auth_group, auth_user CASCADE",
            [("TRUNCATE", "auth_group"), ("TRUNCATE", "auth_user")],
        ),
        ("SELECT 1; DELETE FROM auth_group", [("DELETE", "auth_group")]),
        ('CREATE TABLE "documents_extra" ("id" integer)', [("CREATE", "documents_extra")]),
        ('ALTER TABLE "documents_submission" ADD COLUMN "x" int', [("ALTER", "documents_submission")]),
        ('DROP TABLE IF EXISTS "a", "b"', [("DROP", "a"), ("DROP", "b")]),
        (
            'CREATE UNIQUE INDEX "ix" ON "documents_submission" ("title")',
            [("CREATE", "documents_submission")],
        ),
        ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", [("CREATE", UNKNOWN_TABLE)]),
        ("DO $$ BEGIN DELETE FROM auth_group; END $$", [("DO", UNKNOWN_TABLE)]),
        ('INSERT INTO "auth_group" ("name") VALUES (%s), (%s), (%s)', [("INSERT", "auth_group")]),
    ],
)
def test_writes_are_recognised_however_they_are_written(sql, expected):
    assert list(write_targets(sql)) == expected


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "auth_group"."id", "auth_group"."name" FROM "auth_group" WHERE "name" = %s',
        'SELECT * FROM "documents_submission" FOR UPDATE',
        "SELECT * FROM auth_group FOR NO KEY UPDATE",
        "SELECT 'DELETE FROM auth_group; INSERT INTO x' AS text_not_sql",
        'SELECT "update", "delete" FROM "t"',
        "SELECT replace(name, 'a', 'b') FROM auth_group",
        "COPY auth_group TO STDOUT",
        "SELECT created_at, updated_at FROM documents_submission -- insert into x\n",
        "SAVEPOINT s1",
        "LOCK TABLE auth_group IN SHARE MODE",
        'CREATE DATABASE "test_deploysafe"',
    ],
)
def test_reads_are_not_mistaken_for_writes(sql):
    assert write_targets(sql) == ()


def test_upsert_is_one_write_to_its_own_table():
    sql = "INSERT INTO auth_group (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
    assert write_targets(sql) == (("INSERT", "auth_group"),)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            r"SELECT E'\'' ; UPDATE documents_submission SET status='published'; --'",
            [("UPDATE", "documents_submission")],
        ),
        (r"select e'\\' ; delete from auth_group", [("DELETE", "auth_group")]),
        ("EXECUTE publish_everything(1)", [("EXECUTE", UNKNOWN_TABLE)]),
        (
            "PREPARE publish_everything AS UPDATE documents_submission SET status = $1",
            [("PREPARE", UNKNOWN_TABLE)],
        ),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY public.stats", [("REFRESH", "stats")]),
        ("SELECT * INTO TEMP copied FROM auth_group", [("SELECT INTO", "copied")]),
    ],
)
def test_escape_strings_prepared_statements_and_refreshes_are_recognised_as_writes(sql, expected):
    assert list(write_targets(sql)) == expected


@pytest.mark.parametrize(
    "sql",
    [
        r"SELECT E'it\'s ; UPDATE auth_group SET name = 1' FROM auth_group",
        "SELECT name FROM auth_group WHERE name = 'into the night'",
    ],
)
def test_escape_strings_and_the_word_into_inside_literals_are_still_reads(sql):
    assert write_targets(sql) == ()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1 INTO copied", [("SELECT INTO", "copied")]),
        ("/* /* */ SELECT 1 */ UPDATE auth_group SET name = 'x'", [("UPDATE", "auth_group")]),
        ("SELECT 1 ; UPDATE auth_group SET name = 'x'", [("UPDATE", "auth_group")]),
    ],
)
def test_the_select_fast_path_does_not_hide_writes(sql, expected):
    assert list(write_targets(sql)) == expected


def test_a_large_select_is_classified_as_a_read_without_tokenizing(monkeypatch):
    ids = ", ".join(["%s"] * 2000)
    # "comment" is a column here, and one of the words that used to send a statement to the tokenizer.
    sql = f'SELECT "documents_submission"."comment" FROM "documents_submission" WHERE "id" IN ({ids})'  # noqa: S608

    def tokenized(*args, **kwargs):
        raise AssertionError("the fast path should have classified this SELECT")

    monkeypatch.setattr(sql_writes, "tokenize", tokenized)
    assert len(sql) > 4096
    assert write_targets(sql) == ()


def test_a_name_with_a_part_only_known_when_the_code_runs_reads_as_one_unknown_name():
    assert UNKNOWN_PART == "\x00"
    assert write_targets("INSERT INTO documents_\x00 VALUES (1)") == (("INSERT", "documents_\x00"),)
    assert write_targets("SELECT \x00 FROM documents_submission") == ()


def test_schema_changes_are_ddl_and_select_into_and_nothing_else():
    schema = ("CREATE", "ALTER", "DROP", "COMMENT", "SELECT INTO")
    rows = ("INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "COPY", "TRUNCATE", "REFRESH", "DO", "EXECUTE")
    assert [verb for verb in schema + rows if is_schema_change(verb)] == list(schema)
