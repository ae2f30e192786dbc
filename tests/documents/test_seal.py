"""documents' seal: every SQL route around documents.services is refused, whatever API it takes,
and the database is left as it was (rows and history). Runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, models, transaction
from django.db.models.signals import post_save
from django.utils import timezone

import deployguard
from deployguard import state
from documents import services
from documents.exceptions import DirectWriteRefused
from documents.models import SEAL, PublishedDraft, Submission, service_write
from tests.factories import published_draft

pytestmark = pytest.mark.django_db

SEALED_UPDATE = (
    'UPDATE on "documents_submission" refused: documents\'s tables are written only through '
    "documents.services. Use the admin's actions, or call the service with an acting user."
)


@pytest.fixture
def draft(superuser) -> PublishedDraft:
    return published_draft(actor=superuser)


def snapshot() -> dict[str, Any]:
    """Every row of documents' tables and their history, to compare after a refused write."""
    return {
        model._meta.label: sorted(model._base_manager.values_list(), key=repr)
        for model in (Submission, PublishedDraft, Submission.history.model, PublishedDraft.history.model)
    }


def a_new_submission() -> Submission:
    now = timezone.now()
    return Submission(
        ml_number="ML-900", title="Planted", submitted_by="nobody", created_at=now, updated_at=now
    )


def bare_queryset_update(draft: PublishedDraft) -> None:
    models.QuerySet(model=Submission).filter(pk=draft.submission_id).update(title="Rewritten")


def bare_queryset_delete(draft: PublishedDraft) -> None:
    models.QuerySet(model=PublishedDraft).filter(pk=draft.pk).delete()


def manager_made_at_run_time(draft: PublishedDraft) -> None:
    manager = models.Manager()
    manager.model = Submission
    manager.bulk_create([a_new_submission()])


def manager_made_at_run_time_update(draft: PublishedDraft) -> None:
    manager = models.Manager()
    manager.model = PublishedDraft
    manager.filter(pk=draft.pk).update(status="withdrawn", withdrawn_at=timezone.now(), withdrawn_by=None)


def raw_insert_returning(draft: PublishedDraft) -> None:
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    list(
        Submission.objects.raw(
            "INSERT INTO documents_submission (ml_number, title, submitted_by, status, data_source, "
            "is_legitimate, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            ["ML-901", "Planted", "nobody", "submitted", "production", True, now, now],
        )
    )


def private_save_table(draft: PublishedDraft) -> None:
    submission = a_new_submission()
    submission._save_table(raw=False, cls=Submission, force_insert=True, using="default")


def private_insert(draft: PublishedDraft) -> None:
    submission = a_new_submission()
    fields = [f for f in Submission._meta.concrete_fields if not f.primary_key]
    Submission._base_manager._insert([submission], fields=fields, using="default")


def private_do_update(draft: PublishedDraft) -> None:
    submission = Submission.objects.get(pk=draft.submission_id)
    field = Submission._meta.get_field("title")
    submission._do_update(
        Submission._base_manager.all(), "default", submission.pk, [(field, None, "Rewritten")], None, False
    )


def private_raw_delete(draft: PublishedDraft) -> None:
    PublishedDraft._base_manager.filter(pk=draft.pk)._raw_delete(using="default")


def private_queryset_update(draft: PublishedDraft) -> None:
    Submission._base_manager.filter(pk=draft.submission_id)._update(
        [(Submission._meta.get_field("title"), None, "x")]
    )


def bare_queryset_bulk_update(draft: PublishedDraft) -> None:
    submission = Submission.objects.get(pk=draft.submission_id)
    submission.title = "Rewritten"
    models.QuerySet(model=Submission).bulk_update([submission], ["title"])


def raw_update_returning(draft: PublishedDraft) -> None:
    list(
        Submission.objects.raw(
            "UPDATE documents_submission SET title = 'x' WHERE id = %s RETURNING *", [draft.submission_id]
        )
    )


def cursor_update(draft: PublishedDraft) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE documents_submission SET title = %s WHERE id = %s", ["Rewritten", draft.submission_id]
        )


def cursor_executemany(draft: PublishedDraft) -> None:
    with connection.cursor() as cursor:
        cursor.executemany("DELETE FROM documents_publisheddraft WHERE id = %s", [[draft.pk]])


def cursor_in_a_cte(draft: PublishedDraft) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH doomed AS (SELECT id FROM documents_publisheddraft) "
            "UPDATE documents_publisheddraft SET data_source = 'production' "
            "WHERE id IN (SELECT id FROM doomed)"
        )


def forged_history(draft: PublishedDraft) -> None:
    """A history record that makes a planted row look as if an admin published it."""
    Submission.history.bulk_history_create(
        [Submission.objects.get(pk=draft.submission_id)],
        update=True,
        default_user=draft.published_by,
        default_change_reason="Published from the admin",
        custom_historical_attrs={
            "history_origin": "POST /admin/documents/submission/",
            "history_deploy_id": "",
        },
    )


def history_rewritten(draft: PublishedDraft) -> None:
    PublishedDraft.history.filter(id=draft.pk).update(history_change_reason="Approved by the board")


def history_deleted(draft: PublishedDraft) -> None:
    PublishedDraft.history.filter(id=draft.pk).delete()


ROUTES: dict[str, Callable[[PublishedDraft], None]] = {
    "bare QuerySet(model=...).update()": bare_queryset_update,
    "bare QuerySet(model=...).delete()": bare_queryset_delete,
    "manager made at run time: bulk_create()": manager_made_at_run_time,
    "manager made at run time: update()": manager_made_at_run_time_update,
    "raw('INSERT ... RETURNING')": raw_insert_returning,
    "Model._save_table()": private_save_table,
    "Manager._insert()": private_insert,
    "Model._do_update()": private_do_update,
    "QuerySet._raw_delete()": private_raw_delete,
    "QuerySet._update()": private_queryset_update,
    "bare QuerySet(model=...).bulk_update()": bare_queryset_bulk_update,
    "raw('UPDATE ... RETURNING *')": raw_update_returning,
    "cursor.execute()": cursor_update,
    "cursor.executemany()": cursor_executemany,
    "cursor.execute() with a CTE": cursor_in_a_cte,
    "forged bulk_history_create()": forged_history,
    "history rewritten": history_rewritten,
    "history deleted": history_deleted,
}


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
def test_every_route_around_the_services_is_refused_and_writes_nothing(draft, route):
    before = snapshot()

    with pytest.raises(DirectWriteRefused), transaction.atomic():
        route(draft)

    assert snapshot() == before


def test_the_refusal_names_the_statement_the_table_and_the_way_out(draft):
    with pytest.raises(DirectWriteRefused) as refusal, transaction.atomic():
        cursor_update(draft)

    assert str(refusal.value) == SEALED_UPDATE


def test_service_write_outside_the_services_is_refused_before_anything_runs(draft):
    before = snapshot()

    with pytest.raises(DirectWriteRefused) as refusal, service_write(Submission):
        Submission.objects.filter(pk=draft.submission_id).update(title="Rewritten")

    assert str(refusal.value).startswith(
        "documents's seal can be opened only by documents.services (entered from tests.documents.test_seal)"
    )
    assert snapshot() == before


def test_a_receiver_running_inside_a_service_cannot_write_another_model_through_it(draft, superuser):
    """The service's block opens the tables of the model it saves, not the others."""

    def withdraw_every_draft(sender, instance, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE documents_publisheddraft SET data_source = 'test'")

    before = snapshot()
    post_save.connect(withdraw_every_draft, sender=Submission, dispatch_uid="test_seal.rogue")
    try:
        with pytest.raises(DirectWriteRefused, match='UPDATE on "documents_publisheddraft" refused'):
            services.create_submission(actor=superuser, ml_number="ML-902", title="T", submitted_by="S")
    finally:
        post_save.disconnect(sender=Submission, dispatch_uid="test_seal.rogue")

    assert snapshot() == before


def test_a_history_row_without_the_change_it_records_is_refused_even_inside_the_seal(draft):
    """Even code that passes for documents.services (what in-process code can still do: see the
    README) cannot add a history row on its own: the block must have changed the row's table."""
    forge = compile(
        "with SEAL.writing(Submission):\n"
        "    Submission.history.bulk_history_create([row], update=True, default_change_reason='forged')\n",
        "<forged>",
        "exec",
    )
    before = snapshot()
    row = Submission.objects.get(pk=draft.submission_id)

    with pytest.raises(DirectWriteRefused, match="a history row is written only by the change it records"):
        with transaction.atomic():
            exec(  # noqa: S102
                forge, {"__name__": "documents.services", "SEAL": SEAL, "Submission": Submission, "row": row}
            )

    assert snapshot() == before


def test_deploy_mode_refuses_first_so_a_deploy_counts_the_refusal(draft, settings):
    settings.DEPLOYGUARD_STATE_CACHE_SECONDS = 0
    state.enable(reason="Release 9", changed_by="ops")
    before = snapshot()

    with pytest.raises(deployguard.DeployModeActive), transaction.atomic():
        cursor_update(draft)

    state.disable(changed_by="ops")
    assert snapshot() == before


def test_the_services_quarantine_and_restore_rows_with_their_history(draft):
    prior = services.quarantine_rows(model=PublishedDraft, pks=[draft.pk], reason="scrub run 1")
    assert PublishedDraft.objects.get(pk=draft.pk).data_source == "quarantine"
    assert services.restore_rows(model=PublishedDraft, prior=prior, reason="scrub run 1 undone") == 1

    reasons = list(PublishedDraft.history.filter(id=draft.pk).values_list("history_change_reason", flat=True))
    assert reasons[:2] == ["scrub run 1 undone", "scrub run 1"]


@pytest.mark.django_db(transaction=True)
def test_migrations_may_fill_a_column_of_a_sealed_table_through_the_schema_editor(draft):
    with connection.schema_editor() as editor:
        editor.execute("UPDATE documents_submission SET title = title WHERE id = %s", [draft.submission_id])


def test_allow_writes_the_deploy_pipelines_way_through_passes_the_seal(draft):
    with deployguard.allow_writes("a restore"), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE documents_submission SET title = %s WHERE id = %s", ["Restored", draft.submission_id]
        )

    assert Submission.objects.get(pk=draft.submission_id).title == "Restored"


@pytest.mark.django_db(transaction=True)
def test_a_migrations_code_run_inside_the_schema_editor_is_judged_like_any_other(draft):
    """Only the editor's own statements pass: RunPython's ORM calls and RunSQL's SQL do not."""
    before = snapshot()

    def _run_sql(editor):  # named as RunSQL's, which hands a migration's SQL to the editor
        editor.execute("UPDATE documents_submission SET title = 'Seeded by RunSQL'")

    with pytest.raises(DirectWriteRefused), connection.schema_editor(atomic=False) as editor:
        _run_sql(editor)
    with pytest.raises(DirectWriteRefused), connection.schema_editor(atomic=False):
        models.QuerySet(model=Submission).update(title="Seeded by RunPython")

    assert snapshot() == before
