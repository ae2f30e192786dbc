"""public_drafts(): what readers may see, row for row, and the public reads that select from it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from deployguard.integrity import default_registry, flag_rows
from documents import listing, selectors, services
from documents.listing import Cursor, Search, public_page
from documents.models import DataSource, PublishedDraft, Submission
from documents.selectors import public_document, public_drafts
from tests.documents.fakes import (
    raw_insert_draft,
    raw_insert_submission,
    raw_update_submission,
    script_publishes_without_user,
)
from tests.factories import SubmissionFactory, published_draft
from tests.utils import behind_the_services, rewriting_history

pytestmark = pytest.mark.django_db

SHOWN, WITHDRAWN, HIDDEN = "shown", "withdrawn (410)", "hidden (404)"


def raw_update_draft(pk: int, **values: Any) -> None:
    assignments = ", ".join(f"{connection.ops.quote_name(column)} = %s" for column in values)
    with behind_the_services(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE documents_publisheddraft SET {assignments} WHERE id = %s",  # noqa: S608 (quoted names)
            [*values.values(), pk],
        )


def published(actor) -> str:
    return published_draft(actor=actor).name


def withdrawn(actor) -> str:
    draft = published_draft(actor=actor)
    return services.withdraw_draft(actor=actor, draft=draft, reason="Superseded").name


def quarantined(actor) -> str:
    draft = published_draft(actor=actor)
    services.quarantine_rows(model=PublishedDraft, pks=[draft.pk], reason="Scrub run r1: documents.E021")
    return draft.name


def withdrawn_then_quarantined(actor) -> str:
    name = withdrawn(actor)
    draft = PublishedDraft.objects.get(name=name)
    services.quarantine_rows(model=PublishedDraft, pks=[draft.pk], reason="Scrub run r1: documents.E021")
    return name


def of_a_quarantined_submission(actor) -> str:
    draft = published_draft(actor=actor)
    services.quarantine_rows(
        model=Submission, pks=[draft.submission_id], reason="Scrub run r1: documents.E020"
    )
    return draft.name


def by_a_test_submitter(actor) -> str:
    return published_draft(actor=actor, submitted_by="Test User").name


def with_a_test_word_in_its_title(actor) -> str:
    return published_draft(actor=actor, title="Lorem ipsum for widgets").name


def marked_test_data(actor) -> str:
    draft = published_draft(actor=actor)
    raw_update_draft(draft.pk, data_source=DataSource.TEST)
    return draft.name


def of_a_submission_marked_test_data(actor) -> str:
    draft = published_draft(actor=actor)
    raw_update_submission(draft.submission_id, data_source=DataSource.TEST)
    return draft.name


def not_legitimate(actor) -> str:
    draft = published_draft(actor=actor)
    raw_update_draft(draft.pk, is_legitimate=False)
    return draft.name


def inserted_by_raw_sql(actor) -> str:
    submission = raw_insert_submission("ML-990902", status="published", approved_by_id=actor.pk)
    raw_insert_draft("rfc902", submission_id=submission, published_by_id=actor.pk)
    return "rfc902"


def inserted_by_raw_sql_for_a_real_submission(actor) -> str:
    # A legitimate approved submission, "published" by hand: status flipped, draft inserted.
    submission = SubmissionFactory(status=Submission.Status.APPROVED, actor=actor)
    raw_update_submission(submission.pk, status=Submission.Status.PUBLISHED)
    raw_insert_draft("rfc903", submission_id=submission.pk, published_by_id=actor.pk)
    return "rfc903"


def published_by_a_script_without_a_user(actor) -> str:
    return script_publishes_without_user("ML-990901", published_by=actor, name="rfc901").name


def whose_submission_is_no_longer_published(actor) -> str:
    draft = published_draft(actor=actor)
    raw_update_submission(draft.submission_id, status=Submission.Status.APPROVED)
    return draft.name


def whose_title_was_changed_by_raw_sql(actor) -> str:
    draft = published_draft(actor=actor)
    raw_update_submission(draft.submission_id, title="Widgets, now with a different title")
    return draft.name


def withdrawn_by_raw_sql(actor) -> str:
    # Withdrawn without the service: no history record of it, so not a withdrawal readers are told of.
    from django.utils import timezone

    draft = published_draft(actor=actor)
    raw_update_draft(draft.pk, status="withdrawn", withdrawn_at=timezone.now(), withdrawn_by_id=actor.pk)
    return draft.name


def dated_by_raw_sql(actor) -> str:
    # Fields the rules compare with history are covered by them; the pages also show the dates.
    draft = published_draft(actor=actor)
    raw_update_draft(
        draft.pk, published_at=connection.ops.adapt_datetimefield_value(datetime(2099, 1, 1, tzinfo=UTC))
    )
    return draft.name


def withdrawal_redated_by_raw_sql(actor) -> str:
    name = withdrawn(actor)
    draft = PublishedDraft.objects.get(name=name)
    raw_update_draft(
        draft.pk, withdrawn_at=connection.ops.adapt_datetimefield_value(datetime(2001, 1, 1, tzinfo=UTC))
    )
    return name


CASES: dict[str, tuple[Callable[[Any], str], str]] = {
    "published through the service": (published, SHOWN),
    "withdrawn through the service": (withdrawn, WITHDRAWN),
    "quarantined": (quarantined, HIDDEN),
    "withdrawn, then quarantined": (withdrawn_then_quarantined, HIDDEN),
    "of a quarantined submission": (of_a_quarantined_submission, HIDDEN),
    "by a test submitter": (by_a_test_submitter, HIDDEN),
    "with a test word in its title": (with_a_test_word_in_its_title, HIDDEN),
    "marked test data": (marked_test_data, HIDDEN),
    "of a submission marked test data": (of_a_submission_marked_test_data, HIDDEN),
    "not legitimate": (not_legitimate, HIDDEN),
    "inserted by raw SQL": (inserted_by_raw_sql, HIDDEN),
    "inserted by raw SQL for a real submission": (inserted_by_raw_sql_for_a_real_submission, HIDDEN),
    "published by a script without a user": (published_by_a_script_without_a_user, HIDDEN),
    "whose submission is no longer published": (whose_submission_is_no_longer_published, HIDDEN),
    "whose title was changed by raw SQL": (whose_title_was_changed_by_raw_sql, HIDDEN),
    "withdrawn by raw SQL": (withdrawn_by_raw_sql, HIDDEN),
    "published at a date set by raw SQL": (dated_by_raw_sql, HIDDEN),
    "withdrawn at a date set by raw SQL": (withdrawal_redated_by_raw_sql, HIDDEN),
}


def seen(name: str) -> str:
    document = public_document(name)
    if document is None:
        return HIDDEN
    return WITHDRAWN if document.withdrawn else SHOWN


def listed() -> set[str]:
    names, page = set(), public_page()
    while True:
        names |= {document.name for document in page.documents}
        if page.older is None:
            return names
        page = public_page(before=page.older)


@pytest.mark.parametrize("case", CASES)
def test_a_draft_is_shown_only_when_it_is_a_legitimate_publication(case, superuser):
    make, expected = CASES[case]
    neighbour = published_draft(actor=superuser, title="A legitimate neighbour").name

    name = make(superuser)

    assert seen(name) == expected
    assert (name in set(public_drafts().values_list("name", flat=True))) == (expected == SHOWN)
    assert (name in listed()) == (expected == SHOWN)
    assert (name in {document.name for document in selectors.feed_documents()}) == (expected == SHOWN)
    assert seen(neighbour) == SHOWN


def test_every_read_agrees_with_public_drafts_row_for_row_and_with_the_integrity_engine(superuser):
    expected, made = {}, {}
    for make, outcome in CASES.values():
        made[make] = make(superuser)
        expected[made[make]] = outcome

    shown = set(public_drafts().values_list("name", flat=True))
    readable = set(public_drafts(include_withdrawn=True).values_list("name", flat=True))
    assert shown == {name for name, outcome in expected.items() if outcome == SHOWN}
    assert readable - shown == {name for name, outcome in expected.items() if outcome == WITHDRAWN}
    assert listed() == shown
    assert {document.name for document in selectors.feed_documents()} == shown
    assert {name for name in expected if seen(name) != HIDDEN} == readable

    # The engine's whole-table pass (a different SQL path on PostgreSQL) flags the rest, but for the
    # drafts whose dates differ from their latest history record, which only the selector checks.
    errors = [rule for rule in default_registry.select() if rule.severity == "error"]
    flagged_drafts = set(flag_rows(errors, PublishedDraft))
    flagged_submissions = set(flag_rows(errors, Submission))
    production = PublishedDraft.objects.filter(
        data_source=DataSource.PRODUCTION, submission__data_source=DataSource.PRODUCTION
    )
    clean = {
        draft.name
        for draft in production
        if draft.pk not in flagged_drafts and draft.submission_id not in flagged_submissions
    }
    redated = {draft.name for draft in production if draft.name in clean and dates_differ_from_record(draft)}
    assert redated == {made[dated_by_raw_sql], made[withdrawal_redated_by_raw_sql]}
    assert clean - redated == readable


def dates_differ_from_record(draft: PublishedDraft) -> bool:
    latest = PublishedDraft.history.filter(id=draft.pk).order_by("-history_id").first()
    # No record at all: the rules flag that already (documents.E021).
    return latest is not None and (draft.published_at, draft.withdrawn_at) != (
        latest.published_at,
        latest.withdrawn_at,
    )


def test_a_silenced_rule_no_longer_hides_what_only_it_flags(superuser, settings):
    name = by_a_test_submitter(superuser)
    assert seen(name) == HIDDEN

    settings.DEPLOYGUARD_SILENCED_RULES = ["documents.E007", "documents.E008"]

    assert seen(name) == SHOWN


def test_a_new_test_word_hides_what_it_flags_at_once(superuser, settings):
    name = published_draft(actor=superuser, title="Widgets for the cafeteria").name
    assert seen(name) == SHOWN

    settings.DOCUMENTS_TEST_WORDS = ["cafeteria"]

    assert seen(name) == HIDDEN


def test_pages_go_newest_first_by_keyset_and_back_again(superuser, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    names = [published_draft(actor=superuser).name for _ in range(5)]
    newest_first = names[::-1]

    first = public_page()
    second = public_page(before=first.older)
    third = public_page(before=second.older)

    assert [d.name for d in first.documents] == newest_first[:2]
    assert [d.name for d in second.documents] == newest_first[2:4]
    assert [d.name for d in third.documents] == newest_first[4:]
    assert (first.newer, third.older) == (None, None)
    back = public_page(after=third.newer)
    assert [d.name for d in back.documents] == newest_first[2:4]
    assert [d.name for d in public_page(after=back.newer).documents] == newest_first[:2]
    assert public_page(after=back.newer).newer is None


def test_a_cursor_survives_the_row_it_names_being_hidden(superuser, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    drafts = [published_draft(actor=superuser) for _ in range(4)]
    first = public_page()
    services.quarantine_rows(model=PublishedDraft, pks=[drafts[2].pk], reason="Scrub run r2: documents.E021")

    second = public_page(before=first.older)

    assert [d.name for d in second.documents] == [drafts[1].name, drafts[0].name]


def test_drafts_published_in_the_same_instant_are_ordered_by_id_and_none_is_skipped(superuser, monkeypatch):
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)
    drafts = [published_draft(actor=superuser) for _ in range(5)]
    same_instant = drafts[0].published_at
    for draft in drafts:
        raw_update_draft(draft.pk, published_at=connection.ops.adapt_datetimefield_value(same_instant))
        # Keep the history in step, or the rows would be hidden as changed without a record.
        with rewriting_history():
            PublishedDraft.history.filter(id=draft.pk).update(published_at=same_instant)

    seen_names, page = [], public_page()
    while True:
        seen_names += [d.name for d in page.documents]
        if page.older is None:
            break
        page = public_page(before=page.older)

    assert seen_names == [d.name for d in sorted(drafts, key=lambda d: d.pk, reverse=True)]


def test_a_cursor_token_round_trips_and_garbage_is_refused():
    cursor = Cursor.parse("1735689600123456.42")
    assert cursor is not None
    assert (cursor.published_at.isoformat(), cursor.pk) == ("2025-01-01T00:00:00.123456+00:00", 42)
    assert cursor.token == "1735689600123456.42"
    for garbage in [
        "",
        "1",
        "1.",
        ".1",
        "a.b",
        "1.2.3",
        "-1.2",
        "1.2\n",
        "1" * 18 + ".1",
        "1." + "9" * 19,
        "\uff11.\uff12",
    ]:
        assert Cursor.parse(garbage) is None, garbage


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rfc12", Search(text="rfc12", name="rfc12")),
        ("  RFC 12 ", Search(text="RFC 12", name="rfc12")),
        ("rfc-007", Search(text="rfc-007", name="rfc007")),
        ("Interoperable  widgets", Search(text="Interoperable widgets", words=("interoperable", "widgets"))),
        ("widgets, widgets!", Search(text="widgets, widgets!", words=("widgets",))),
        ("100%_off_\\", Search(text="100%_off_\\", words=("100", "off"))),
        ("a\x00b\x1fc", Search(text="a b c", words=("a", "b", "c"))),
        ("Über façade", Search(text="Über façade", words=("über", "façade"))),
        (
            "one two three four five six seven",
            Search(
                text="one two three four five six seven", words=("one", "two", "three", "four", "five", "six")
            ),
        ),
        ("%%%", None),
        ("   ", None),
        (
            "'; DROP TABLE documents_submission; --",
            Search(
                text="'; DROP TABLE documents_submission; --",
                words=("drop", "table", "documents", "submission"),
            ),
        ),
    ],
)
def test_a_search_is_bounded_and_holds_only_letters_and_digits(text, expected):
    assert Search.parse(text) == expected


def test_a_very_long_search_is_cut_to_its_limit():
    search = Search.parse("widget " * 1000)
    assert search is not None
    assert len(search.text) <= listing.SEARCH_MAX_LENGTH
    assert search.words == ("widget",)


def test_search_finds_titles_by_word_prefixes_and_names_exactly(superuser):
    interop = published_draft(actor=superuser, title="Interoperable widgets, part one")
    gadgets = published_draft(actor=superuser, title="Gadget naming conventions")
    hidden = published_draft(actor=superuser, title="Interoperable fake widgets")

    def names(text: str) -> list[str]:
        return [d.name for d in public_page(search=Search.parse(text)).documents]

    assert names("interop widg") == [interop.name]
    assert names("WIDGETS") == [interop.name]
    assert names("gadget") == [gadgets.name]
    assert names("nothing-like-it") == []
    assert names(gadgets.name.upper()) == [gadgets.name]
    assert names(hidden.name) == []
    assert names("fake") == []


def test_a_search_on_sqlite_reads_a_bounded_window_and_says_where_it_stopped(
    superuser, monkeypatch, on_postgresql
):
    if on_postgresql:
        pytest.skip("PostgreSQL searches the title index: no window")
    monkeypatch.setattr(listing, "SEARCH_WINDOW", 3)
    old = published_draft(actor=superuser, title="Interoperable gadgets")
    for _ in range(4):
        published_draft(actor=superuser, title="Unrelated widgets")

    first = public_page(search=Search.parse("gadgets"))

    assert first.documents == []
    assert first.searched_to is not None
    further = public_page(search=Search.parse("gadgets"), before=first.searched_to)
    assert [d.name for d in further.documents] == [old.name]
    assert further.searched_to is None


@pytest.mark.parametrize(
    "change",
    [
        {"data_source": DataSource.TEST},
        {"is_legitimate": False},
        {"published_at": datetime(2099, 1, 1, tzinfo=UTC)},
        {"name": "rfc9999"},
    ],
)
def test_a_remembered_decision_is_made_again_when_the_draft_changes_behind_the_history(superuser, change):
    draft = published_draft(actor=superuser)
    assert seen(draft.name) == SHOWN

    adapted = {
        column: connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value
        for column, value in change.items()
    }
    raw_update_draft(draft.pk, **adapted)

    assert seen(change.get("name", draft.name)) == HIDDEN


def test_a_remembered_decision_is_made_again_when_the_submission_changes_behind_the_history(superuser):
    draft = published_draft(actor=superuser)
    assert seen(draft.name) == SHOWN

    raw_update_submission(draft.submission_id, submitted_by="Test User")

    assert seen(draft.name) == HIDDEN


def test_a_remembered_decision_is_made_again_after_a_recorded_change(superuser):
    draft = published_draft(actor=superuser)
    assert seen(draft.name) == SHOWN

    services.quarantine_rows(
        model=Submission, pks=[draft.submission_id], reason="Scrub run r3: documents.E007"
    )

    assert seen(draft.name) == HIDDEN


def test_an_unchanged_document_costs_one_query_once_decided(superuser, django_assert_num_queries):
    draft = published_draft(actor=superuser)
    with django_assert_num_queries(2):  # its inputs, then the decision
        assert public_document(draft.name) is not None
    with django_assert_num_queries(1):  # its inputs, unchanged: the decision is remembered
        assert public_document(draft.name) is not None


def test_a_rule_reading_another_table_turns_remembering_decisions_off(superuser, django_assert_num_queries):
    from django.contrib.auth import get_user_model
    from django.db.models import Exists, OuterRef

    from deployguard.integrity import Rule

    rule = Rule(
        id="documents.E099",
        severity="error",
        model=PublishedDraft,
        description="published by an account that is no longer active",
        condition=lambda: Exists(
            get_user_model().objects.filter(pk=OuterRef("published_by_id"), is_active=False)
        ),
    )
    default_registry.register(rule)
    selectors.forget_definition()
    try:
        draft = published_draft(actor=superuser)
        assert not selectors.decisions_remembered()
        assert seen(draft.name) == SHOWN
        get_user_model().objects.filter(pk=superuser.pk).update(is_active=False)
        with django_assert_num_queries(1):  # straight to the decision, every time
            assert seen(draft.name) == HIDDEN
    finally:
        del default_registry.rules[rule.id]
        selectors.forget_definition()
    assert selectors.decisions_remembered()


@pytest.mark.parametrize(
    "bounds",
    [
        {},  # PostgreSQL: the title index (few matches)
        {"SEARCH_CANDIDATES": 2, "PAGE_SIZE": 1},  # a page of candidates among the newest drafts
        {"SEARCH_PROBE": 1, "SEARCH_RARE": 1},  # common in older documents: read in listing order
    ],
)
def test_every_search_path_pages_through_the_same_matches(superuser, monkeypatch, bounds):
    for name, value in bounds.items():
        monkeypatch.setattr(listing, name, value)
    matching = [published_draft(actor=superuser, title=f"Gadget registry, part {n}").name for n in range(3)]
    published_draft(actor=superuser, title="Unrelated widgets")
    published_draft(actor=superuser, title="Gadget fake registry")  # a test word: never shown

    found, page = [], public_page(search=Search.parse("gadget"))
    while True:
        found += [d.name for d in page.documents]
        if page.older is None:
            break
        page = public_page(search=Search.parse("gadget"), before=page.older)

    assert found == matching[::-1]
