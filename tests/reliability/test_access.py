"""Access: every admin URL, every action and every /_deploy/ endpoint, for every kind of visitor.

The expected answer of each cell is written out in MATRIX below. Every request is made in a
transaction rolled back afterwards, with the rows measured before and after it: a refused
request must leave every protected table as it was.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import transaction
from django.test import Client

from deployguard import state, views
from documents.admin import shown_state
from documents.models import PublishedDraft, Submission
from tests.factories import (
    DOCUMENTS_PERMISSIONS,
    StaffFactory,
    SubmissionFactory,
    SuperuserFactory,
    UserFactory,
    published_draft,
)
from tests.reliability.rows import RowChanges, compare, row_hashes

pytestmark = pytest.mark.django_db

TOKEN = "s" * 40

# Answers.
LOGIN = "redirect to login"
FORBIDDEN = "403"
OK = "200"
REFUSED = "302, refused, nothing written"
DONE = "302, written"
UNAUTHORIZED = "401"

ROLES = ("anonymous", "user", "staff", "publisher", "superuser")


def make_user(role: str) -> Any:
    if role == "anonymous":
        return None
    if role == "user":  # not staff, though holding every documents permission
        return UserFactory(permissions=DOCUMENTS_PERMISSIONS)
    if role == "staff":  # staff, no permissions
        return StaffFactory()
    if role == "publisher":  # staff who may see and publish, and nothing else
        return StaffFactory(permissions=("view_submission", "publish_submission", "view_publisheddraft"))
    return SuperuserFactory()


@dataclass
class Rows:
    submitted: Submission
    approved: Submission
    draft: PublishedDraft


@dataclass(frozen=True)
class Endpoint:
    method: str
    url: Callable[[Rows], str]
    data: Callable[[Rows], dict[str, Any]] = lambda rows: {}
    # For DONE: proves the intended write happened (rows refreshed).
    written: Callable[[Rows], bool] = lambda rows: False

    @property
    def unsafe(self) -> bool:
        return self.method != "GET"


S = "/admin/documents/submission/"
D = "/admin/documents/publisheddraft/"


def _action(name: str, pick: Callable[[Rows], Any], **extra: str) -> Callable[[Rows], dict[str, Any]]:
    """The action's confirmation as its page sends it: the row, and the state the page showed it in."""

    def data(rows: Rows) -> dict[str, Any]:
        obj = type(pick(rows))._base_manager.get(pk=pick(rows).pk)
        fields = admin.site.get_model_admin(type(obj)).state_fields
        shown = {"shown": f"{obj.pk}:{shown_state(obj, fields)}"} if extra.get("post") else {}
        return {"action": name, ACTION_CHECKBOX_NAME: [str(obj.pk)], **shown, **extra}

    return data


def _status(model, pick: Callable[[Rows], Any], status: str) -> Callable[[Rows], bool]:
    return lambda rows: model._base_manager.get(pk=pick(rows).pk).status == status


def _first_history(pick: Callable[[Rows], Any]) -> Callable[[Rows], str]:
    return lambda rows: f"{pick(rows).history.order_by('history_id').first().history_id}/"


ENDPOINTS: dict[str, Endpoint] = {
    "submission changelist": Endpoint("GET", lambda r: S),
    "submission add form": Endpoint("GET", lambda r: f"{S}add/"),
    "submission add": Endpoint(
        "POST",
        lambda r: f"{S}add/",
        lambda r: {"ml_number": "ML-900", "title": "Widgets", "submitted_by": "Ada"},
        lambda r: Submission.objects.filter(ml_number="ML-900").exists(),
    ),
    "submission change form": Endpoint("GET", lambda r: f"{S}{r.submitted.pk}/change/"),
    "submission change": Endpoint(
        "POST",
        lambda r: f"{S}{r.submitted.pk}/change/",
        lambda r: {"title": "Retitled", "submitted_by": "Ada"},
        lambda r: Submission.objects.get(pk=r.submitted.pk).title == "Retitled",
    ),
    "submission delete form": Endpoint("GET", lambda r: f"{S}{r.submitted.pk}/delete/"),
    "submission delete": Endpoint(
        "POST", lambda r: f"{S}{r.submitted.pk}/delete/", lambda r: {"post": "yes"}
    ),
    "submission history": Endpoint("GET", lambda r: f"{S}{r.submitted.pk}/history/"),
    "submission history version": Endpoint(
        "GET", lambda r: f"{S}{r.approved.pk}/history/" + _first_history(lambda r: r.approved)(r)
    ),
    "submission history revert": Endpoint(
        "POST",
        lambda r: f"{S}{r.approved.pk}/history/" + _first_history(lambda r: r.approved)(r),
        lambda r: {"title": "Reverted", "submitted_by": "Ada"},
    ),
    "approve action": Endpoint(
        "POST",
        lambda r: S,
        _action("approve_selected", lambda r: r.submitted, post="yes", reason="Approved"),
        _status(Submission, lambda r: r.submitted, "approved"),
    ),
    "reject action": Endpoint(
        "POST",
        lambda r: S,
        _action("reject_selected", lambda r: r.submitted, post="yes", reason="Off topic"),
        _status(Submission, lambda r: r.submitted, "rejected"),
    ),
    "publish action": Endpoint(
        "POST",
        lambda r: S,
        _action("publish_selected", lambda r: r.approved, post="yes", reason="Board said yes"),
        _status(Submission, lambda r: r.approved, "published"),
    ),
    "draft changelist": Endpoint("GET", lambda r: D),
    "draft add form": Endpoint("GET", lambda r: f"{D}add/"),
    "draft change form": Endpoint("GET", lambda r: f"{D}{r.draft.pk}/change/"),
    "draft change": Endpoint("POST", lambda r: f"{D}{r.draft.pk}/change/", lambda r: {"status": "withdrawn"}),
    "draft delete": Endpoint("POST", lambda r: f"{D}{r.draft.pk}/delete/", lambda r: {"post": "yes"}),
    "draft history": Endpoint("GET", lambda r: f"{D}{r.draft.pk}/history/"),
    "draft history revert": Endpoint(
        "POST",
        lambda r: f"{D}{r.draft.pk}/history/" + _first_history(lambda r: r.draft)(r),
        lambda r: {"status": "withdrawn"},
    ),
    "withdraw action": Endpoint(
        "POST",
        lambda r: D,
        _action("withdraw_selected", lambda r: r.draft, post="yes", reason="Superseded"),
        _status(PublishedDraft, lambda r: r.draft, "withdrawn"),
    ),
    "/_deploy/health": Endpoint("GET", lambda r: "/_deploy/health"),
    "/_deploy/status": Endpoint("GET", lambda r: "/_deploy/status"),
    "/_deploy/mode with a session, no token": Endpoint(
        "POST", lambda r: "/_deploy/mode", lambda r: {"mode": "on", "reason": "from a browser"}
    ),
}

# fmt: off
MATRIX: dict[str, tuple[str, str, str, str, str]] = {
    # endpoint                                  anonymous  user   staff      publisher  superuser
    "submission changelist":                   (LOGIN,    LOGIN, FORBIDDEN, OK,        OK),
    "submission add form":                     (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, OK),
    "submission add":                          (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, DONE),
    "submission change form":                  (LOGIN,    LOGIN, FORBIDDEN, OK,        OK),
    "submission change":                       (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, DONE),
    "submission delete form":                  (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "submission delete":                       (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "submission history":                      (LOGIN,    LOGIN, FORBIDDEN, OK,        OK),
    "submission history version":              (LOGIN,    LOGIN, FORBIDDEN, OK,        OK),
    "submission history revert":               (LOGIN,    LOGIN, REFUSED,   REFUSED,   REFUSED),
    "approve action":                          (LOGIN,    LOGIN, FORBIDDEN, REFUSED,   DONE),
    "reject action":                           (LOGIN,    LOGIN, FORBIDDEN, REFUSED,   DONE),
    "publish action":                          (LOGIN,    LOGIN, FORBIDDEN, DONE,      DONE),
    "draft changelist":                        (LOGIN,    LOGIN, FORBIDDEN, OK,        OK),
    "draft add form":                          (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "draft change form":                       (LOGIN,    LOGIN, FORBIDDEN, OK,        OK),
    "draft change":                            (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "draft delete":                            (LOGIN,    LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN),
    "draft history":                           (LOGIN,    LOGIN, FORBIDDEN, OK,        OK),
    "draft history revert":                    (LOGIN,    LOGIN, REFUSED,   REFUSED,   REFUSED),
    # With no action it may run, the drafts changelist has no action form: the POST shows the list.
    "withdraw action":                         (LOGIN,    LOGIN, FORBIDDEN, OK,        DONE),
    "/_deploy/health":                         (OK,       OK,    OK,        OK,        OK),
    "/_deploy/status":                         (OK,       OK,    OK,        OK,        OK),
    "/_deploy/mode with a session, no token":  (UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED, UNAUTHORIZED,
                                                UNAUTHORIZED),
}
# fmt: on


def make_rows() -> Rows:
    return Rows(
        submitted=SubmissionFactory(), approved=SubmissionFactory(status="approved"), draft=published_draft()
    )


def answer_of(response, written: bool) -> str:
    code = response.status_code
    if code == 302:
        if response["Location"].startswith("/admin/login/"):
            return LOGIN
        return DONE if written else REFUSED
    return {200: OK, 401: UNAUTHORIZED, 403: FORBIDDEN}.get(code, str(code))


def request(client: Client, endpoint: Endpoint, rows: Rows) -> Any:
    url = endpoint.url(rows)
    if endpoint.method == "GET":
        return client.get(url)
    return client.post(url, endpoint.data(rows))


def test_the_matrix_names_every_endpoint():
    """The access matrix lists an answer for every admin URL, action and /_deploy/ endpoint it tests."""
    assert set(MATRIX) == set(ENDPOINTS)
    assert all(len(answers) == len(ROLES) for answers in MATRIX.values())


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_gives_each_role_exactly_the_answer_in_the_matrix(role, settings, record_scenario):
    """Each role gets exactly its MATRIX answer from every admin URL, action and /_deploy/ endpoint."""
    settings.DEPLOYGUARD_TOKEN = TOKEN
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    rows = make_rows()
    client = Client()
    user = make_user(role)
    if user is not None:
        client.force_login(user)
    column = ROLES.index(role)
    wrong: list[str] = []
    refused = attempts = 0
    lost = added = 0

    # Every request starts from these rows: each one before it was rolled back.
    before = row_hashes()
    for name, endpoint in ENDPOINTS.items():
        expected = MATRIX[name][column]
        with transaction.atomic():
            response = request(client, endpoint, rows)
            changes = compare(before, row_hashes())
            written = bool(changes.added or changes.lost) and endpoint.written(rows)
            got = answer_of(response, written)
            transaction.set_rollback(True)
        state.clear_cache()
        if got != expected:
            wrong.append(f"{name}: expected {expected}, got {got} ({response.status_code})")
        if expected != DONE:
            # Nothing but a permitted write may change a row; a GET never does.
            if changes.lost or changes.added:
                wrong.append(f"{name}: wrote although the answer was {got}: {changes}")
            lost, added = lost + changes.lost, added + changes.added
        if endpoint.unsafe:
            attempts += 1
            refused += expected != DONE

    assert not wrong, "\n".join(wrong)
    assert state.current().enabled is False
    record_scenario(
        f"access as {role}: {len(ENDPOINTS)} endpoints, {attempts} unsafe",
        attempts=attempts,
        writes_refused=refused,
        changes=RowChanges(lost=lost, added=added, by_table={}),
        exit_status=" ".join(sorted({MATRIX[name][column] for name in MATRIX})),
    )


def _with_csrf_token(client: Client, data: dict[str, Any]) -> dict[str, Any]:
    client.get("/admin/")
    return {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value}


UNSAFE_ADMIN = [name for name, endpoint in ENDPOINTS.items() if endpoint.unsafe and not name.startswith("/")]


def test_every_unsafe_admin_request_without_a_csrf_token_is_refused_and_writes_nothing(record_scenario):
    """Every unsafe admin request, even a superuser's, is refused with 403 without a CSRF token."""
    rows = make_rows()
    client = Client(enforce_csrf_checks=True)
    client.force_login(SuperuserFactory())
    unsafe = [*UNSAFE_ADMIN, "logout"]
    refused = 0
    lost = added = 0

    before = row_hashes()
    for name in unsafe:
        endpoint = ENDPOINTS.get(name) or Endpoint("POST", lambda r: "/admin/logout/")
        with transaction.atomic():
            response = client.post(endpoint.url(rows), endpoint.data(rows))
            changes = compare(before, row_hashes())
            transaction.set_rollback(True)
        assert response.status_code == 403, name
        assert b"CSRF verification failed" in response.content, name
        refused += 1
        lost, added = lost + changes.lost, added + changes.added

        # The same request with the token gets the superuser's answer from the matrix: the 403 was CSRF's.
        if name in MATRIX:
            with transaction.atomic():
                response = client.post(endpoint.url(rows), _with_csrf_token(client, endpoint.data(rows)))
                transaction.set_rollback(True)
            assert response.status_code == {FORBIDDEN: 403, OK: 200}.get(MATRIX[name][-1], 302), name

    record_scenario(
        f"CSRF: {len(unsafe)} unsafe admin requests without a token",
        attempts=len(unsafe),
        writes_refused=refused,
        changes=RowChanges(lost=lost, added=added, by_table={}),
        exit_status="403",
    )


@pytest.mark.parametrize(
    "offered",
    ["", "s", "s" * 39, "s" * 39 + "t", TOKEN, TOKEN + "s", "t" * 40, "ß" * 20, "s" * 4000],
    ids=["empty", "one", "prefix", "last-differs", "right", "longer", "same-length", "non-ascii", "huge"],
)
def test_the_deploy_token_is_compared_in_constant_time_whatever_is_offered(db, settings, offered):
    """The deploy token is checked only by hmac.compare_digest, for every offered value and length."""
    settings.DEPLOYGUARD_TOKEN = TOKEN
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0

    with mock.patch.object(views.hmac, "compare_digest", wraps=hmac.compare_digest) as compare_digest:
        response = Client().post(
            "/_deploy/mode",
            {"mode": "status-check"},
            content_type="application/json",
            headers={"authorization": f"Bearer {offered}"},
        )

    if not offered:
        assert response.status_code == 401
        compare_digest.assert_not_called()
        return
    compare_digest.assert_called_once_with(offered.encode(), TOKEN.encode())
    # The right token gets past the check (to the 400 for the bad mode); every other is 403.
    assert response.status_code == (400 if offered == TOKEN else 403)
    source = inspect.getsource(views.mode)
    assert "== token" not in source and "token ==" not in source
