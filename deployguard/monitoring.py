"""Live monitoring: an audit log line per unsafe request, and an integrity check of every committed write.

The write check runs after the transaction commits (`transaction.on_commit`), looks only
at the rows written, and never fails the request: any error in it is logged. A row that
breaks an error-level rule is logged, mailed to ADMINS and, when
DEPLOYGUARD_QUARANTINE_ON_VIOLATION is on, quarantined with a history reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import mail_admins
from django.db import models, transaction
from django.db.models.signals import post_save
from django.http import HttpRequest, HttpResponse

from deployguard import scrub
from deployguard.integrity import default_registry, evaluate
from deployguard.logs import logfmt, was_refused
from deployguard.middleware import SAFE_METHODS
from deployguard.models_integrity import ScrubRun
from deployguard.origin import current_deploy_id, current_origin
from deployguard.state import is_deploy_mode

audit_logger = logging.getLogger("deployguard.audit")
logger = logging.getLogger("deployguard.monitoring")

CHECK_BATCH_SIZE = 500
# Within batched_checks(): {model: pks committed since the block began}; None outside it.
_pending: ContextVar[dict[type[models.Model], dict[Any, None]] | None] = ContextVar(
    "deployguard_monitor_pending", default=None
)

VIOLATION_SUBJECT = "Integrity violation: {label} {pk} breaks {rule_ids}"


def deploy_mode_label() -> str:
    """'on', 'off' or 'unknown' (the state could not be read), from the one reader."""
    try:
        return "on" if is_deploy_mode() else "off"
    except Exception:
        logger.exception("Could not read deploy mode for the audit log")
        return "unknown"


class AuditLogMiddleware:
    """Log every unsafe request to `deployguard.audit` (at INFO; one refused in deploy mode has its
    WARNING from the refusal instead); safe methods pass untouched."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in SAFE_METHODS:
            return self.get_response(request)
        # The user who sent the request: read before the view, which may log them in or out.
        user = getattr(request, "user", None)
        username = user.get_username() if user is not None and user.is_authenticated else "anonymous"
        started = time.perf_counter()
        response = self.get_response(request)
        if was_refused(request):
            return response  # deploy mode refused it, and logged it once already (deployguard.logs)
        duration_ms = (time.perf_counter() - started) * 1000
        fields = {
            "user": username,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(duration_ms, 1),
            "deploy_mode": deploy_mode_label(),
        }
        audit_logger.info(logfmt(fields), extra={"audit": fields})
        return response


def check_written_rows(model: type[models.Model], pks: list[Any]) -> list[str]:
    """Run the model's error-level rules on the rows just written; alert on violations. Never raises."""
    try:
        rules = [r for r in default_registry.select() if r.model is model and r.severity == "error"]
        if not rules:
            return []
        results = evaluate(rules, pks=pks, sample_size=len(pks))
        broken: dict[Any, list[str]] = {}
        for result in results:
            for pk in result.sample_pks:
                broken.setdefault(pk, []).append(result.rule.id)
        for pk, rule_ids in broken.items():
            _alert(model, pk, rule_ids)
        return sorted({rule_id for ids in broken.values() for rule_id in ids})
    except Exception:
        logger.exception("Integrity check of %s %s failed", model._meta.label_lower, pks)
        return []


def _alert(model: type[models.Model], pk: Any, rule_ids: list[str]) -> None:
    label = model._meta.label_lower
    descriptions = "\n".join(
        f"  {rule_id}: {default_registry.rules[rule_id].description}" for rule_id in rule_ids
    )
    message = (
        f"{label} {pk} breaks {', '.join(rule_ids)} after a committed write.\n{descriptions}\n"
        f"Origin: {current_origin()}  deploy: {current_deploy_id() or '-'}\n"
        f"Explain it with: manage.py explain_row {label} {pk}"
    )
    logger.error("%s", message)  # escaped into one line by deployguard.logs
    mail_admins(
        VIOLATION_SUBJECT.format(label=label, pk=pk, rule_ids=", ".join(rule_ids)),
        message,
        fail_silently=True,
    )
    if getattr(settings, "DEPLOYGUARD_QUARANTINE_ON_VIOLATION", False):
        run = scrub.quarantine(scrub.add_cascades({model: {pk: rule_ids}}), kind=ScrubRun.Kind.MONITOR)
        if run is not None:
            logger.warning("Quarantined %s %s in run %s", label, pk, run.id)


def _after_save(
    sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any
) -> None:
    if raw or not getattr(settings, "DEPLOYGUARD_MONITOR_WRITES", True):
        return
    transaction.on_commit(partial(_committed, sender, instance.pk), using=using, robust=True)


def _committed(model: type[models.Model], pk: Any) -> None:
    pending = _pending.get()
    if pending is None:
        check_written_rows(model, [pk])
    else:
        pending.setdefault(model, {})[pk] = None


@contextmanager
def batched_checks() -> Iterator[None]:
    """Check the rows committed inside the block together when it ends, a few queries in all
    instead of one per row (the rules cost more to build than to run). For loops that commit
    row by row, such as an admin action over a thousand rows; alerts come at the block's end."""
    if _pending.get() is not None:
        yield
        return
    token = _pending.set({})
    try:
        yield
    finally:
        pending = _pending.get() or {}
        _pending.reset(token)
        for model, pks in pending.items():
            ordered = list(pks)
            for start in range(0, len(ordered), CHECK_BATCH_SIZE):
                check_written_rows(model, ordered[start : start + CHECK_BATCH_SIZE])


def connect_receivers() -> None:
    for model in default_registry.models():
        post_save.connect(_after_save, sender=model, dispatch_uid=f"deployguard.monitor.{model._meta.label}")
