"""Receivers that refuse writes reaching the models outside documents.services.

save() and delete() (including loaddata's raw saves and the per-row deletes a
queryset delete makes) all pass through these signals; the bulk paths that skip
signals are refused by ServiceOnlyQuerySet.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import pre_delete, pre_save

from documents.exceptions import TransitionRefused
from documents.models import SERVICE_ONLY_MODELS, Submission, refuse_unless_service

BORN_SUBMITTED = (
    "A new submission starts as 'submitted' (got {status!r}): create it, then approve "
    "and publish it through the admin actions."
)


def refuse_direct_save(sender: type[models.Model], instance: models.Model, raw: bool, **kwargs: Any) -> None:
    if isinstance(instance, Submission) and (raw or instance._state.adding):
        if instance.status != Submission.Status.SUBMITTED:
            raise TransitionRefused(BORN_SUBMITTED.format(status=instance.status))
    refuse_unless_service(sender, "loaddata" if raw else "save()")


def refuse_direct_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    refuse_unless_service(sender, "delete()")


def connect_receivers() -> None:
    for model in SERVICE_ONLY_MODELS:
        uid = f"documents.guard.{model.__name__}"
        pre_save.connect(refuse_direct_save, sender=model, dispatch_uid=uid)
        pre_delete.connect(refuse_direct_delete, sender=model, dispatch_uid=uid)
