"""Where a change comes from: the request, command or process behind each history record."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

from django.db import models
from django.http import HttpRequest, HttpResponse

ORIGIN_MAX_LENGTH = 255
DEPLOY_ID_VARIABLE = "DEPLOYGUARD_DEPLOY_ID"
"""The deploy id of a process deploy_safe starts (its migrate subprocess), from the environment."""

_current_origin: ContextVar[str | None] = ContextVar("deployguard_origin", default=None)
_current_deploy_id: ContextVar[str | None] = ContextVar("deployguard_deploy_id", default=None)


@cache
def process_origin() -> str:
    """Describe this process: the management command it runs, or the program and host."""
    argv = sys.argv or ["python"]
    program = os.path.basename(argv[0]) or "python"
    host = socket.gethostname()
    if program in {"manage.py", "django-admin", "__main__.py"} and len(argv) > 1:
        label = f"command:{argv[1]}"
    else:
        label = f"process:{program}"
    return f"{label} pid={os.getpid()} host={host}"[:ORIGIN_MAX_LENGTH]


def current_origin() -> str:
    """The origin of a change made now: the innermost `origin()` block, else the process."""
    return _current_origin.get() or process_origin()


def current_deploy_id() -> str:
    """The id of the deploy this process is part of, or "" outside a deploy."""
    return _current_deploy_id.get() or os.environ.get(DEPLOY_ID_VARIABLE, "")


@contextmanager
def origin(label: str) -> Iterator[None]:
    """Attribute every change made inside the block to `label`."""
    token = _current_origin.set(label[:ORIGIN_MAX_LENGTH])
    try:
        yield
    finally:
        _current_origin.reset(token)


@contextmanager
def deploy(deploy_id: str) -> Iterator[None]:
    """Stamp every change made inside the block with `deploy_id`."""
    token = _current_deploy_id.set(deploy_id)
    try:
        yield
    finally:
        _current_deploy_id.reset(token)


class OriginMiddleware:
    """Attribute the changes a request makes to its method and path."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with origin(f"request:{request.method} {request.path}"):
            return self.get_response(request)


class OriginHistoricalModel(models.Model):
    """Abstract base for simple-history records: adds the origin and the deploy id."""

    history_origin = models.CharField(max_length=ORIGIN_MAX_LENGTH, blank=True, default="")
    history_deploy_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        abstract = True


def _stamp_origin(sender: Any, history_instance: models.Model, **kwargs: Any) -> None:
    if isinstance(history_instance, OriginHistoricalModel):
        history_instance.history_origin = current_origin()
        history_instance.history_deploy_id = current_deploy_id()


def connect_receivers() -> None:
    from simple_history.signals import pre_create_historical_record

    pre_create_historical_record.connect(_stamp_origin, dispatch_uid="deployguard.origin")
