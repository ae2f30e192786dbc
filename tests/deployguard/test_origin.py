"""Where a change comes from: the request, command or process behind each history record, and
the deploy it was part of."""

from __future__ import annotations

import os
import socket

from django.http import HttpResponse
from django.test import RequestFactory

from deployguard import origin


def test_a_process_is_described_by_its_command_or_program_with_pid_and_host():
    described = origin.process_origin()

    assert described.endswith(f" pid={os.getpid()} host={socket.gethostname()}")
    assert described.startswith(("command:", "process:"))
    assert len(described) <= origin.ORIGIN_MAX_LENGTH


def test_the_innermost_origin_block_names_the_change_and_the_process_otherwise():
    with origin.origin("outer"):
        with origin.origin("command:scrub_fake_data"):
            assert origin.current_origin() == "command:scrub_fake_data"
        assert origin.current_origin() == "outer"
    assert origin.current_origin() == origin.process_origin()


def test_the_deploy_id_comes_from_the_block_else_from_the_environment_deploy_safe_sets(monkeypatch):
    monkeypatch.delenv(origin.DEPLOY_ID_VARIABLE, raising=False)
    assert origin.current_deploy_id() == ""

    monkeypatch.setenv(origin.DEPLOY_ID_VARIABLE, "d-from-parent")
    with origin.deploy("d-42"):
        assert origin.current_deploy_id() == "d-42"
    assert origin.current_deploy_id() == "d-from-parent"


def test_a_request_s_changes_are_attributed_to_its_method_and_path():
    seen: list[str] = []

    def view(request):
        seen.append(origin.current_origin())
        return HttpResponse()

    origin.OriginMiddleware(view)(RequestFactory().post("/admin/documents/submission/add/"))

    assert seen == ["request:POST /admin/documents/submission/add/"]


def test_history_records_carry_the_origin_and_the_deploy_id(db):
    from deployguard.models import DeployModeState

    with origin.origin("command:deploy_mode"), origin.deploy("d-7"):
        DeployModeState.objects.create(reason="stamped")

    record = DeployModeState.history.get()
    assert (record.history_origin, record.history_deploy_id) == ("command:deploy_mode", "d-7")
