"""Test-data matching survives disguise, passes genuine words, and agrees with itself on every engine."""
# ruff: noqa: RUF001  (look-alike letters are what these tests are about)

from __future__ import annotations

from importlib import import_module

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deployguard.integrity import default_registry
from documents import services
from documents.integrity import test_submitters as configured_submitters
from documents.integrity import test_words as configured_words
from documents.matching import NO_WORDS, is_test_content, stored_keys
from documents.models import CONTROL_CHARACTER, Submission
from tests.documents.fakes import KEY_COLUMNS, raw_insert_submission, raw_update_submission
from tests.factories import SubmissionFactory
from tests.utils import behind_the_services, rewriting_history

pytestmark = pytest.mark.django_db

DISGUISED_SUBMITTERS = [
    "Test User",
    "test  user",  # doubled space
    "TestUser",  # camel case
    "testuser",  # joined
    "test_user",
    "Test-User",
    "T.e.s.t U.s.e.r",
    "T e s t   U s e r",
    "Test User 2",  # digits appended
    "TestUser42",
    "Tеst Usеr",  # Cyrillic e
    "ТЕЅТ USER",  # Cyrillic capitals
    "Τest User",  # Greek capital tau
    "ｔｅｓｔ ｕｓｅｒ",  # full width
    "𝐓𝐞𝐬𝐭 𝐔𝐬𝐞𝐫",  # mathematical bold
    "Ⓣⓔⓢⓣ",  # circled
    "te\u200bst us\u200der",  # zero-width space and joiner
    "\ufefftest",  # byte order mark
    "tést",  # accent
    "AnonymousUser",
    "anonymous\u00a0user",  # no-break space
    "ANONYMOUS_USER_7",
    "ᎢᎬᏚᎢ",  # Cherokee
]
DISGUISED_TITLES = [
    "Sample test document",
    "A TEST",
    "Fake123",
    "dummy_data",
    "SampleDocument about lorem",
    "Lorem-Ipsum",
    "f.a.k.e widgets",
    "ѕample widgets",  # Cyrillic dze
    "Ｅｘａｍｐｌｅ",
    "widgets (d u m m y)",
    "testfake",
    "exampleTest",
]
GENUINE = [
    ("Tess Tester", "Widgets"),
    ("Grace Hopper", "Results of the protocol contest"),
    ("Grace Hopper", "Attestation formats"),
    ("Testa Rossa", "Widgets"),
    ("Grace Hopper", "Protest2024 testing"),
    ("Grace Hopper", "Examples of fakery? no: sampled data"),
    ("Иван Тестов", "Сетевые протоколы"),  # Russian
    ("Zoë Müller", "Ελληνικά πρωτόκολλα"),  # Greek
    ("李雷", "网络协议"),
    ("Sam Pleasant", "Lore of the sea"),
]


def e007_offenders() -> set[int]:
    return set(default_registry.rules["documents.E007"].offending().values_list("pk", flat=True))


@pytest.mark.parametrize("submitted_by", DISGUISED_SUBMITTERS)
def test_a_disguised_test_submitter_is_refused_and_flagged(editor, submitted_by):
    with pytest.raises(services.RuleRefused):
        services.create_submission(
            actor=editor, ml_number="ML-001", title="Widgets", submitted_by=submitted_by
        )
    legacy = SubmissionFactory(submitted_by=submitted_by, title="Widgets", legacy=True)

    assert not Submission.objects.exclude(pk=legacy.pk).exists()
    assert e007_offenders() == {legacy.pk}


@pytest.mark.parametrize("title", DISGUISED_TITLES)
def test_a_disguised_test_word_in_a_title_is_refused_and_flagged(editor, title):
    with pytest.raises(services.RuleRefused):
        services.create_submission(actor=editor, ml_number="ML-001", title=title, submitted_by="Ada Lovelace")
    legacy = SubmissionFactory(submitted_by="Ada Lovelace", title=title, legacy=True)

    assert e007_offenders() == {legacy.pk}


@pytest.mark.parametrize(("submitted_by", "title"), GENUINE)
def test_genuine_names_and_words_that_contain_a_test_word_pass(editor, submitted_by, title):
    submission = services.create_submission(
        actor=editor, ml_number="ML-001", title=title, submitted_by=submitted_by
    )

    assert Submission.objects.get(pk=submission.pk).title == title
    assert e007_offenders() == set()


def test_a_row_written_by_sql_without_match_keys_is_flagged(superuser):
    raw = raw_insert_submission("ML-900", submitted_by="Ada Lovelace", title="Widgets")

    assert Submission.objects.get(pk=raw).title_key == ""
    assert e007_offenders() == {raw}


def test_a_row_written_by_sql_with_every_key_but_the_bare_one_is_flagged(superuser):
    raw = raw_insert_submission("ML-990901", submitted_by="Ada Lovelace", title="Widgets", match_keys=True)
    assert e007_offenders() == set()

    raw_update_submission(raw, submitted_by_bare_key="")

    assert e007_offenders() == {raw}


def test_an_edit_recomputes_every_match_key_and_its_history_records_them(editor):
    submission = services.create_submission(
        actor=editor, ml_number="ML-001", title="Widgets", submitted_by="Ada Lovelace"
    )

    services.update_submission(
        actor=editor, submission=submission, title="Gadgets 2", submitted_by="Grace Hopper 3"
    )

    stored = Submission.objects.filter(pk=submission.pk).values(*KEY_COLUMNS).get()
    assert stored == {
        "submitted_by_key": "grace hopper 3",
        "submitted_by_bare_key": "gracehopper",
        "title_key": "gadgets 2",
    }
    assert (
        Submission.history.filter(id=submission.pk).latest("history_id").submitted_by_bare_key
        == "gracehopper"
    )
    assert e007_offenders() == set()


def test_a_submitter_without_letters_stores_a_bare_key_that_is_no_name(editor):
    submission = services.create_submission(
        actor=editor, ml_number="ML-001", title="Widgets", submitted_by="42 7"
    )

    assert (submission.submitted_by_key, submission.submitted_by_bare_key) == ("42 7", NO_WORDS)
    assert e007_offenders() == set()


def test_the_migration_fills_bare_keys_from_stored_keys_and_leaves_rows_without_keys_flagged(editor):
    fill_bare_keys = import_module("documents.migrations.0006_submission_bare_key").fill_bare_keys
    kept = raw_insert_submission("ML-990902", submitted_by="Test User 2", title="Widgets", match_keys=True)
    keyless = raw_insert_submission("ML-990903", submitted_by="Ada Lovelace", title="Widgets")
    saved = SubmissionFactory(submitted_by="Grace Hopper")
    for pk in (kept, saved.pk):
        raw_update_submission(pk, submitted_by_bare_key="")
    apps = MigrationLoader(connection).project_state(("documents", "0006_submission_bare_key")).apps

    with rewriting_history("the migration's backfill, as deploy_safe --allow-data-migration runs it"):
        fill_bare_keys(apps, None)

    bare = dict(Submission.objects.values_list("pk", "submitted_by_bare_key"))
    assert bare == {kept: "testuser", keyless: "", saved.pk: "gracehopper"}
    assert set(Submission.history.values_list("submitted_by_bare_key", flat=True)) == {"gracehopper"}
    assert e007_offenders() == {kept, keyless}


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\r", "\x1b", "\x1f", "\x7f"])
@pytest.mark.parametrize("field", ["title", "submitted_by"])
def test_control_characters_are_refused_by_validation_with_a_clear_message(editor, char, field):
    values = {"title": "Widgets", "submitted_by": "Ada Lovelace", field: f"Wid{char}gets"}

    with pytest.raises(ValidationError) as refusal:
        services.create_submission(actor=editor, ml_number="ML-001", **values)

    assert refusal.value.message_dict == {
        field: [CONTROL_CHARACTER.format(name=f"U+{ord(char):04X}", position=4)]
    }
    assert not Submission.objects.exists()


def test_tabs_and_line_breaks_are_allowed(editor):
    submission = services.create_submission(
        actor=editor, ml_number="ML-001", title="Widgets\tand\ngadgets", submitted_by="Ada Lovelace"
    )

    assert submission.title_key == "widgets and gadgets"


def test_text_without_a_word_passes(editor):
    submission = services.create_submission(
        actor=editor, ml_number="ML-001", title="🎉 ?!", submitted_by="李雷"
    )

    assert (submission.title_key, submission.submitted_by_key) == (" ", "李雷")
    assert e007_offenders() == set()


def test_an_edit_with_a_nul_character_is_refused_by_validation(editor):
    submission = SubmissionFactory()

    with pytest.raises(ValidationError) as refusal:
        services.update_submission(actor=editor, submission=submission, title="A\x00B", submitted_by="Ada")

    assert refusal.value.message_dict == {"title": [CONTROL_CHARACTER.format(name="U+0000", position=2)]}


# --- the same verdict on every engine -------------------------------------------------------
# One row whose text and keys are set by SQL for each generated input; the rule's SQL decides
# on this engine, and must agree with the Python decision. Run on SQLite and on PostgreSQL,
# both agree with the same reference, so with each other.

PIECES = [
    "test", "Test", "TEST", "user", "User", "anonymous", "fake", "sample", "dummy", "lorem", "example",
    "con", "at", "tion", "er", "Tess", "s", "1", "42", " ", "  ", "_", "-", ".", "\u200b", "\u00a0",
    "е", "Т", "ѕ", "ｔ", "𝐭", "é", "ß", "İ", "ﬁ", "Ⅸ", "½", "中", "٣", "\U0001d7d9",
]  # fmt: skip
generated_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=8).map("".join)


@pytest.fixture
def probe(editor):
    return SubmissionFactory(title="Widgets", submitted_by="Ada Lovelace")


def db_verdict(pk: int, submitted_by: str, title: str) -> bool:
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE documents_submission SET submitted_by = %s, title = %s, submitted_by_key = %s, "
            "submitted_by_bare_key = %s, title_key = %s WHERE id = %s",
            [submitted_by, title, *stored_keys(submitted_by=submitted_by, title=title).values(), pk],
        )
    rule = default_registry.rules["documents.E007"]
    return Submission.objects.filter(rule.condition(), pk=pk).exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(submitted_by=generated_text, title=generated_text)
@example(submitted_by="Test User", title="")
@example(submitted_by="Tess Tester", title="contest attestation")
@example(submitted_by="ǅ", title="İstanbul testİ")
def test_the_rule_sql_and_the_python_decision_agree_for_any_text(probe, submitted_by, title):
    submitted_by, title = submitted_by.replace("\x00", ""), title.replace("\x00", "")
    expected = is_test_content(submitted_by, title, names=configured_submitters(), words=configured_words())

    assert db_verdict(probe.pk, submitted_by, title) == expected
