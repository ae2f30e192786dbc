"""Hostile input: generated values for every admin form, filter, command argument and /_deploy/ request.

Each hypothesis example runs in a transaction rolled back at its end, so each starts from the
same rows; rows are measured before and after every example. Rejected input must leave every
protected table as it was; accepted input must change exactly the intended rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from deployguard import state
from documents.admin import BAD_SELECTION, MAX_SEARCH_LENGTH, NUL_IN_ADDRESS, SEARCH_TOO_LONG, shown_state
from documents.models import PublishedDraft, Submission
from tests.factories import SubmissionFactory, SuperuserFactory, published_draft
from tests.reliability.rows import RowChanges, RowHashes, compare, row_hashes
from tests.utils import run_command

pytestmark = pytest.mark.django_db

TOKEN = "t" * 40
SUBMISSIONS = reverse("admin:documents_submission_changelist")
DRAFTS = reverse("admin:documents_publisheddraft_changelist")

# Strings that have broken web applications: SQL, HTML and template metacharacters, format
# strings, look-alike and non-ASCII digits, bidi overrides, NUL, and sizes past every column.
HOSTILE = [
    "",
    " ",
    "\x00",
    "ML-1\x00",
    "'; DROP TABLE documents_submission; --",
    "' OR '1'='1",
    '"><script>alert(1)</script>',
    "<img src=x onerror=alert(1)>",
    "{{ 7|add:7 }}{% debug %}",
    "%s%s%n%(x)s",
    "\\",
    "%",
    "_",
    "ML-١٢٣",
    "ML-001\n",
    "\uff2d\uff2c-001",  # fullwidth ML
    "\u202eML-001",
    "\ufeffML-001",
    "ML--1",
    "ML-1e9",
    "ML-" + "9" * 40,
    "🙂" * 80,
    "A" * 301,
    "x" * 20_000,
    '{"a": [',
    "null",
]
text = st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(codec="utf-8"), max_size=350))
ml_numbers = st.one_of(st.from_regex(r"\AML-[0-9]{1,6}\Z"), text)

BOUNDED = hypothesis_settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_no_traceback(response) -> None:
    assert response.status_code < 500, response.content[:2000]
    assert b"Traceback" not in response.content
    assert b'File "' not in response.content


def messages_of(response) -> list[str]:
    return [m.message for m in get_messages(response.wsgi_request)]


@contextmanager
def rolled_back(baseline: RowHashes | None = None) -> Iterator[dict[str, Any]]:
    """One example: everything it wrote rolled back on exit.

    Rows are measured on entry, or taken from `baseline`: the rows every example starts from,
    since each one before it was rolled back (a third fewer scans of every protected table).
    """
    measured: dict[str, Any] = {}
    with transaction.atomic():
        measured["before"] = row_hashes() if baseline is None else baseline
        yield measured
        transaction.set_rollback(True)


def changes_since(measured: dict[str, Any]) -> RowChanges:
    return compare(measured["before"], row_hashes())


class Tally:
    """Examples tried and refused, and the rows each one changed, for the results table."""

    def __init__(self) -> None:
        self.attempts = 0
        self.refused = 0
        self.lost = 0
        self.added = 0

    def refused_with(self, changes: RowChanges) -> None:
        self.attempts += 1
        self.refused += 1
        self.lost += changes.lost
        self.added += changes.added
        assert (changes.lost, changes.added) == (0, 0), f"a refused input wrote: {changes}"

    def accepted(self) -> None:
        self.attempts += 1

    def changes(self) -> RowChanges:
        return RowChanges(lost=self.lost, added=self.added, by_table={})


@pytest.fixture
def admin_client(db) -> Client:
    client = Client()
    client.force_login(SuperuserFactory())
    return client


def test_submission_add_form_refuses_hostile_values_without_a_write_or_saves_exactly_one_row(
    admin_client, record_scenario
):
    """The submission add form answers any value with a form error and no write, or adds exactly that row."""
    url = reverse("admin:documents_submission_add")
    tally = Tally()

    @BOUNDED
    @given(ml_number=ml_numbers, title=text, submitted_by=text)
    @example(ml_number="ML-7", title="<script>alert(1)</script>", submitted_by="Ada")
    @example(ml_number="ML-١٢٣", title="Digits that are not ASCII", submitted_by="Ada")
    def attempt(ml_number: str, title: str, submitted_by: str) -> None:
        with rolled_back(baseline) as measured:
            response = admin_client.post(
                url, {"ml_number": ml_number, "title": title, "submitted_by": submitted_by}
            )
            assert_no_traceback(response)
            changes = changes_since(measured)
            if response.status_code == 200:
                assert response.context["adminform"].form.errors, "re-rendered without an error"
                assert b"errornote" in response.content
                tally.refused_with(changes)
                return
            assert response.status_code == 302
            saved = Submission.objects.get(ml_number=ml_number.strip())
            assert (saved.title, saved.submitted_by) == (title.strip(), submitted_by.strip())
            assert changes.lost == 0
            assert {t: n for t, (_, n) in changes.by_table.items()} == {
                "documents_submission": 1,
                "documents_historicalsubmission": 1,
                "django_admin_log": 1,
            }
            tally.accepted()

    baseline = row_hashes()
    attempt()
    assert tally.refused and tally.attempts > tally.refused, "both outcomes must be exercised"
    record_scenario(
        f"hostile admin input: submission add form, {tally.attempts} examples",
        attempts=tally.attempts,
        writes_refused=tally.refused,
        changes=tally.changes(),
        exit_status="200 form error or 302 saved",
    )


def test_submission_change_form_refuses_hostile_values_without_a_write_or_edits_exactly_that_row(
    admin_client, record_scenario
):
    """The submission change form answers any value with a form error and no write, or edits only that row."""
    submission = SubmissionFactory()
    url = reverse("admin:documents_submission_change", args=[submission.pk])
    tally = Tally()

    @BOUNDED
    @given(title=text, submitted_by=text)
    def attempt(title: str, submitted_by: str) -> None:
        with rolled_back(baseline) as measured:
            response = admin_client.post(url, {"title": title, "submitted_by": submitted_by})
            assert_no_traceback(response)
            changes = changes_since(measured)
            if response.status_code == 200:
                assert response.context["adminform"].form.errors
                tally.refused_with(changes)
                return
            assert response.status_code == 302
            submission.refresh_from_db()
            assert (submission.title, submission.submitted_by) == (title.strip(), submitted_by.strip())
            assert changes.by_table == {
                "documents_submission": (1, 1),
                "documents_historicalsubmission": (0, 1),
                "django_admin_log": (0, 1),
            }
            tally.accepted()

    baseline = row_hashes()
    attempt()
    assert tally.refused and tally.attempts > tally.refused
    record_scenario(
        f"hostile admin input: submission change form, {tally.attempts} examples",
        attempts=tally.attempts,
        writes_refused=tally.refused,
        changes=tally.changes(),
        exit_status="200 form error or 302 saved",
    )


def _reject_target():
    return SUBMISSIONS, "reject_selected", SubmissionFactory()


def _publish_target():
    return SUBMISSIONS, "publish_selected", SubmissionFactory(status="approved")


def _withdraw_target():
    return DRAFTS, "withdraw_selected", published_draft()


def _rejected(obj, reason):
    obj.refresh_from_db()
    assert obj.status == Submission.Status.REJECTED
    assert obj.history.first().history_change_reason == reason


def _published(obj, reason):
    draft = PublishedDraft.objects.get(submission=obj)
    assert draft.history.first().history_change_reason == reason


def _withdrawn(obj, reason):
    obj.refresh_from_db()
    assert obj.status == PublishedDraft.Status.WITHDRAWN
    assert obj.history.first().history_change_reason == reason


# A confirmed action also records itself for the admin's Recent actions: one log entry, added.
ACTION_LOG = "django_admin_log"


@pytest.mark.parametrize(
    ("target", "done", "tables"),
    [
        (_reject_target, _rejected, {"documents_submission", "documents_historicalsubmission"}),
        (
            _publish_target,
            _published,
            {
                "documents_submission",
                "documents_historicalsubmission",
                "documents_publisheddraft",
                "documents_historicalpublisheddraft",
                "documents_draftnumber",
                "documents_historicaldraftnumber",
            },
        ),
        (_withdraw_target, _withdrawn, {"documents_publisheddraft", "documents_historicalpublisheddraft"}),
    ],
    ids=["reject", "publish", "withdraw"],
)
def test_reasoned_action_confirmations_refuse_hostile_reasons_or_change_exactly_the_selected_row(
    admin_client, record_scenario, target, done, tables
):
    """An action's confirmation re-renders with an error for any unusable reason, writing nothing."""
    changelist, action, obj = target()
    tally = Tally()

    @BOUNDED
    @given(reason=text)
    @example(reason="   ")
    @example(reason="x" * 2001)
    @example(reason="Board decision <b>3</b> '; DROP TABLE x; --")
    def attempt(reason: str) -> None:
        with rolled_back(baseline) as measured:
            response = admin_client.post(
                changelist,
                {
                    "action": action,
                    ACTION_CHECKBOX_NAME: [str(obj.pk)],
                    "post": "yes",
                    "reason": reason,
                    "shown": shown,  # what the confirmation page carries
                },
            )
            assert_no_traceback(response)
            changes = changes_since(measured)
            if response.status_code == 200:
                assert response.context["form"].errors["reason"]
                tally.refused_with(changes)
                return
            assert response.status_code == 302
            done(obj, reason.strip())
            assert set(changes.by_table) <= tables | {ACTION_LOG}, changes
            assert changes.by_table.get(ACTION_LOG) == (0, 1), changes
            tally.accepted()

    stored = type(obj)._base_manager.get(pk=obj.pk)
    shown = f"{obj.pk}:{shown_state(stored, admin.site.get_model_admin(type(obj)).state_fields)}"
    baseline = row_hashes()
    attempt()
    assert tally.refused and tally.attempts > tally.refused
    record_scenario(
        f"hostile admin input: {action} confirmation, {tally.attempts} examples",
        attempts=tally.attempts,
        writes_refused=tally.refused,
        changes=tally.changes(),
        exit_status="200 form error or 302 done",
    )


@pytest.mark.parametrize(
    ("changelist", "action"),
    [
        (SUBMISSIONS, "approve_selected"),
        (SUBMISSIONS, "reject_selected"),
        (SUBMISSIONS, "publish_selected"),
        (DRAFTS, "withdraw_selected"),
    ],
)
def test_an_action_on_a_selection_that_is_not_a_key_changes_nothing_and_says_so(
    admin_client, changelist, action
):
    """An action POST whose selection is not a row ID (text, NUL, overflow) is refused with a message."""
    SubmissionFactory(status="approved")
    published_draft()
    before = row_hashes()

    for value in ("abc", "\x00", "9" * 30, "1.5", "", "-1 OR 1=1"):
        data = {"action": action, ACTION_CHECKBOX_NAME: [value], "post": "yes", "reason": "r"}
        response = admin_client.post(changelist, data)

        assert_no_traceback(response)
        assert response.status_code == 302
        assert BAD_SELECTION.format(value=value) in messages_of(response)
    assert compare(before, row_hashes()) == RowChanges(0, 0, {})


changelist_params = st.dictionaries(
    st.sampled_from(
        [
            "q",
            "integrity",
            "o",
            "p",
            "status__exact",
            "data_source__exact",
            "is_legitimate__exact",
            "_to_field",
            "e",
            "all",
        ]
    ),
    text,
    min_size=1,
    max_size=3,
)


@pytest.mark.parametrize("changelist", [SUBMISSIONS, DRAFTS], ids=["submissions", "drafts"])
def test_changelist_search_filters_and_ordering_answer_hostile_values_without_a_500(
    admin_client, record_scenario, changelist
):
    """Changelist search, filters and ordering answer any value with a page or a message, never a 500."""
    SubmissionFactory(status="published")
    tally = Tally()

    @BOUNDED
    @given(params=changelist_params)
    @example(params={"q": "\x00"})
    @example(params={"status__exact": "\x00", "o": "1"})
    @example(params={"q": "x" * (MAX_SEARCH_LENGTH + 1)})
    @example(params={"q": "ab " * 5000})
    @example(params={"integrity": "' OR 1=1 --"})
    @example(params={"o": "99.-5.abc"})
    def attempt(params: dict[str, str]) -> None:
        with rolled_back(baseline) as measured:
            response = admin_client.get(changelist, params)
            assert_no_traceback(response)
            if response.status_code == 302 and any("\x00" in v for v in params.values()):
                assert NUL_IN_ADDRESS in messages_of(response)
            if response.status_code == 302 and len(params.get("q", "")) > MAX_SEARCH_LENGTH:
                assert SEARCH_TOO_LONG.format(limit=MAX_SEARCH_LENGTH) in messages_of(response)
            assert response.status_code in (200, 302, 400), response.status_code
            tally.refused_with(changes_since(measured))

    baseline = row_hashes()
    attempt()
    record_scenario(
        f"hostile admin input: {changelist.split('/')[-2]} changelist query, {tally.attempts} examples",
        attempts=tally.attempts,
        writes_refused=tally.refused,
        changes=tally.changes(),
        exit_status="200, 302 with a message, or 400",
    )


@pytest.mark.parametrize(
    "path",
    [
        "{app}/abc/history/",
        "{app}/%00/history/",
        "{app}/99999999999999999999999/history/",
        "{app}/abc/history/1/",
        "{app}/{pk}/history/abc/",
        "{app}/{pk}/history/99999999999999999999999/",
        "{app}/abc/change/",
    ],
)
@pytest.mark.parametrize("app", ["submission", "publisheddraft"])
def test_history_and_change_urls_with_ids_that_are_not_keys_answer_with_a_message(admin_client, path, app):
    """History and change URLs whose IDs are not keys get a redirect with a message or a 404, never a 500."""
    draft = published_draft()
    pk = draft.pk if app == "publisheddraft" else draft.submission.pk
    url = "/admin/documents/" + path.format(app=app, pk=pk)
    before = row_hashes()

    response = admin_client.get(url)

    assert_no_traceback(response)
    assert response.status_code in (302, 404)
    if response.status_code == 302:
        assert messages_of(response), "redirected without saying why"
    assert compare(before, row_hashes()) == RowChanges(0, 0, {})


# /_deploy/


@pytest.fixture
def token(settings):
    settings.DEPLOYGUARD_TOKEN = TOKEN
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    return TOKEN


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)
json_bodies = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.one_of(st.sampled_from(["on", "off", "ON"]), json_values),
        "reason": json_values,
        "expected_minutes": json_values,
        "by": json_values,
        "deploy_id": json_values,
    },
).map(lambda body: json.dumps(body).encode())
bodies = st.one_of(
    json_bodies,
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"{",
            b"[]",
            b'"on"',
            b"mode=on&reason=r",
            b"--b\r\nContent-Disposition: form-data\r\n",
            b"\xff\xfe",
        ]
    ),
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "application/json; charset=bogus",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=b",
            "text/plain",
            "",
        ]
    ),
    st.text(st.characters(codec="latin-1"), max_size=40),
)
authorizations = st.one_of(
    st.just(f"Bearer {TOKEN}"),
    st.none(),
    st.sampled_from(["Bearer", "Bearer ", "bearer " + TOKEN.upper(), "Basic dTpw", f"Bearer {TOKEN}x"]),
    st.text(st.characters(codec="latin-1"), max_size=80).map(lambda t: "Bearer " + t),
)


def test_deploy_endpoints_answer_every_hostile_request_with_json_and_never_a_500(db, token, record_scenario):
    """Every /_deploy/ request, whatever its method, body, Content-Type or token, gets JSON, never a 500."""
    client = Client()
    tally = Tally()
    statuses: Counter[int] = Counter()

    @hypothesis_settings(BOUNDED, max_examples=30)
    @given(
        # Weighted towards POST /_deploy/mode, where bodies and tokens are read.
        endpoint=st.one_of(st.just("mode"), st.sampled_from(["health", "status", "mode"])),
        method=st.one_of(
            st.just("POST"),
            st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW"]),
        ),
        body=bodies,
        content_type=content_types,
        authorization=authorizations,
    )
    @example(
        endpoint="mode",
        method="POST",
        body=b'{"mode": "on", "reason": "a\\u0000b"}',
        content_type="application/json",
        authorization=f"Bearer {TOKEN}",
    )
    @example(
        endpoint="mode",
        method="POST",
        body=b"--b\r\n",
        content_type="multipart/form-data; boundary=b",
        authorization=f"Bearer {TOKEN}",
    )
    @example(
        endpoint="mode",
        method="POST",
        body=b'{"mode": "on", "reason": "deploy 9"}',
        content_type="application/json",
        authorization=f"Bearer {TOKEN}",
    )
    def attempt(endpoint, method, body, content_type, authorization) -> None:
        headers = {"authorization": authorization} if authorization is not None else {}
        with rolled_back(baseline) as measured:
            state.clear_cache()
            response = client.generic(
                method, f"/_deploy/{endpoint}", body, content_type=content_type, headers=headers
            )
            statuses[response.status_code] += 1
            assert_no_traceback(response)
            if method != "HEAD":
                answer = json.loads(response.content)
                if response.status_code >= 400:
                    assert answer["error"], "an error without a message"
            changes = changes_since(measured)
            if response.status_code >= 400:
                tally.refused_with(changes)
            else:
                assert (changes.lost, changes.added) == (0, 0)
                tally.accepted()
        state.clear_cache()

    baseline = row_hashes()
    attempt()
    assert statuses[200] and statuses[400] and statuses[405], statuses
    record_scenario(
        f"hostile /_deploy/ requests, {tally.attempts} examples",
        attempts=tally.attempts,
        writes_refused=tally.refused,
        changes=tally.changes(),
        exit_status=" ".join(f"{status}x{n}" for status, n in sorted(statuses.items())),
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"mode": "on", "reason": "a\x00b"}, '"reason" must not contain NUL characters'),
        ({"mode": "on", "reason": "r", "deploy_id": "\x00"}, '"deploy_id" must not contain NUL characters'),
        ({"mode": "on", "reason": "r", "by": "\x00"}, '"by" must not contain NUL characters'),
        ({"mode": "off", "reason": "\x00"}, '"reason" must not contain NUL characters'),
        ({"mode": "on", "reason": "r" * 2001}, '"reason" must be at most 2000 characters'),
    ],
    ids=["reason-nul", "deploy-id-nul", "by-nul", "off-reason-nul", "reason-huge"],
)
def test_the_switch_refuses_text_the_state_cannot_hold_with_400_and_stays_off(db, token, body, problem):
    """POST /_deploy/mode refuses NUL characters and oversized text with a 400 that names the field."""
    response = Client().post(
        "/_deploy/mode", body, content_type="application/json", headers={"authorization": f"Bearer {TOKEN}"}
    )

    assert response.status_code == 400
    assert problem in response.json()["error"]
    state.clear_cache()
    assert state.current().enabled is False


@pytest.mark.parametrize(
    ("endpoint", "method", "allowed"),
    [
        ("health", "POST", "GET"),
        ("status", "DELETE", "GET"),
        ("mode", "GET", "POST"),
        ("mode", "PUT", "POST"),
    ],
)
def test_a_wrong_method_on_a_deploy_endpoint_gets_405_saying_what_to_use(db, endpoint, method, allowed):
    """A wrong method on a /_deploy/ endpoint gets a 405 with an Allow header and a JSON message."""
    response = Client().generic(method, f"/_deploy/{endpoint}")

    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert response.json() == {"error": f"{method} is not allowed here: use {allowed}."}


# Management commands. Arguments come from argv, which cannot carry NUL (execve refuses it).

arg_text = st.one_of(
    st.sampled_from([h for h in HOSTILE if "\x00" not in h] + ["-1", "nan", "inf", "1e999", "9" * 25, "--"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60),
)
floats_out_of_range = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e999", "10081"]),
    st.floats(max_value=0).map(str),
)


def command_cases(tmp_path) -> st.SearchStrategy[tuple[tuple[str, ...], frozenset[int]]]:
    missing = str(tmp_path / "missing")

    def case(exits: set[int], *parts: Any) -> st.SearchStrategy[tuple[tuple[str, ...], frozenset[int]]]:
        return st.tuples(*[p if isinstance(p, st.SearchStrategy) else st.just(p) for p in parts]).map(
            lambda args: (args, frozenset(exits))
        )

    other_alias = arg_text.filter(lambda a: a != "default")
    return st.one_of(
        case({0, 1, 2}, "verify_integrity", "--rule", arg_text),
        case({0, 1, 2}, "verify_integrity", "--format", arg_text),
        case({0, 1, 2}, "verify_integrity", "--sample", arg_text),
        case({1, 2}, "verify_integrity", "--baseline", arg_text.map(lambda a: f"{missing}/{a}")),
        case({0, 2}, "scrub_fake_data", "--restore", arg_text),
        case({0, 2}, "scrub_fake_data", "--purge", "--older-than", arg_text),
        case({0, 2}, "explain_row", arg_text, arg_text),
        case({0, 2}, "explain_row", "documents.submission", arg_text),
        case({1, 2}, "audit_write_paths", "--format", arg_text),
        case({2}, "audit_write_paths", "--root", arg_text.map(lambda a: f"{missing}/{a}")),
        case({0, 1, 2, 3}, "deploy_mode", "on", "--reason", arg_text, "--deploy-id", arg_text),
        case({1, 2}, "deploy_mode", "on", "--reason", "r", "--expected-minutes", floats_out_of_range),
        case({1, 2}, "deploy_mode", arg_text),
        case({1, 2}, "deploy_mode", "status", "--format", arg_text),
        case({2}, "backup_db", "--database", other_alias),
        case({1, 2}, "restore_db", arg_text.map(lambda a: f"{missing}/{a}"), "--yes"),
        case({2}, "restore_db", f"{missing}/b.sqlite3", "--yes", "--database", other_alias),
        case({2}, "deploy_safe", "--database", other_alias),
        case({1, 2}, "deploy_safe", "--expected-minutes", floats_out_of_range),
        case({2}, "deploy_safe", "--allow-data-migration", arg_text.filter(lambda a: a.count(".") != 1)),
    )


def test_every_command_answers_hostile_arguments_with_a_message_and_a_documented_exit_status(
    db, settings, tmp_path, record_scenario
):
    """Every management command answers hostile arguments with a message and a documented exit status."""
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    tally = Tally()
    exits: Counter[int] = Counter()

    @hypothesis_settings(BOUNDED, max_examples=30)
    @given(case=command_cases(tmp_path))
    @example(case=(("scrub_fake_data", "--purge", "--older-than", "9" * 20), frozenset({2})))
    @example(case=(("backup_db", "--database", "bogus"), frozenset({2})))
    @example(case=(("deploy_safe", "--expected-minutes", "nan"), frozenset({2})))
    def attempt(case: tuple[tuple[str, ...], frozenset[int]]) -> None:
        args, documented = case
        with rolled_back(baseline) as measured:
            state.clear_cache()
            # Only CommandError and argparse's SystemExit come back; any other exception fails here.
            _, stderr, status = run_command(*args)
            changes = changes_since(measured)
        state.clear_cache()
        if status == 1 and stderr.startswith("CommandError: Error: "):
            # argparse's own errors: call_command raises them with status 1, a shell exits 2
            # (proved by test_command_misuse_exits_2_from_a_shell_with_one_line_and_no_traceback).
            status = 2
        exits[status] += 1
        assert status in documented, (args, status, stderr)
        if status:
            assert stderr.strip(), (args, "failed without a message")
            assert "Traceback" not in stderr
            tally.refused_with(changes)
        else:
            tally.accepted()

    baseline = row_hashes()
    attempt()
    record_scenario(
        f"hostile command arguments, {tally.attempts} examples",
        attempts=tally.attempts,
        writes_refused=tally.refused,
        changes=tally.changes(),
        exit_status=" ".join(f"{status}x{n}" for status, n in sorted(exits.items())),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("scrub_fake_data", "--purge", "--older-than", "9" * 20), "--purge needs --older-than DAYS (0 to"),
        (("backup_db", "--database", "bogus"), "--database 'bogus' is not in DATABASES"),
        (("deploy_safe", "--expected-minutes", "nan"), "--expected-minutes: expected minutes must be"),
        (("deploy_mode", "sideways"), "invalid choice: 'sideways'"),
    ],
    ids=["older-than-overflow", "unknown-database", "nan-minutes", "unknown-action"],
)
def test_command_misuse_exits_2_from_a_shell_with_one_line_and_no_traceback(args, message):
    """From a shell, command misuse exits 2 with a one-line message and no traceback, touching nothing."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "DJANGO_ENV": "test", "DATABASE_URL": "sqlite:///:memory:"},
    )

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("username", ["", " ", "a b", "x" * 151, "<script>", "ада\u202e"])
def test_ensure_dev_admin_refuses_an_invalid_username_with_exit_2_and_creates_nobody(settings, db, username):
    """ensure_dev_admin refuses a username the user model would not accept, with exit 2 and no account."""
    settings.DJANGO_ENV = "development"
    before = row_hashes()

    _, stderr, status = run_command("ensure_dev_admin", "--username", username)

    assert status == 2
    assert "is not a valid username" in stderr
    assert compare(before, row_hashes()) == RowChanges(0, 0, {})
