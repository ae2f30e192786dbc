"""The /_deploy/ endpoints: health and status for anyone (who switched deploy mode only for staff
and token holders), the switch for holders of the token."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from deployguard import conf, state, switch_request
from deployguard.exceptions import DeployModeAlreadyOn, DrainTimeout
from deployguard.ownership import DeployModeHeld

ENDPOINT_DISABLED = (
    "POST /_deploy/mode is disabled: no DEPLOYGUARD_TOKEN is configured. Set it in the environment "
    "to switch deploy mode over HTTP, or run `manage.py deploy_mode on|off`."
)
TOKEN_REQUIRED = "Send the deploy token: `Authorization: Bearer <DEPLOYGUARD_TOKEN>`."  # noqa: S105
STATUS_PUBLIC = (
    "Who switched deploy mode is shown to staff who are logged in and to holders of the deploy "
    "token (`Authorization: Bearer <DEPLOYGUARD_TOKEN>`)."
)
TOKEN_WRONG = "The deploy token is wrong."  # noqa: S105 (a message, not a secret)
BAD_REQUEST = (
    'Send JSON such as {"mode": "on", "reason": "release 42", "expected_minutes": 10} '
    'or {"mode": "off"}: {problem}.'
)
METHOD_NOT_ALLOWED = "{method} is not allowed here: use {allowed}."


SWITCH_FAILED = (
    "The database refused the switch ({error}); the state is as shown. Where the site connects as a "
    "least-privileged role, switch with `manage.py deploy_mode`, which connects as the tables' owner "
    "(DEPLOYGUARD_OWNER_DATABASE_URL)."
)


def _allow(*methods: str) -> Callable[[Callable[..., JsonResponse]], Callable[..., JsonResponse]]:
    """Like require_http_methods, but the 405 says in JSON what to use instead."""

    def decorator(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                allowed = " or ".join(methods)
                response = _error(METHOD_NOT_ALLOWED.format(method=request.method[:20], allowed=allowed), 405)
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)

        return checked

    return decorator


@never_cache
@_allow("GET")
def health(request: HttpRequest) -> JsonResponse:
    """Database reachable, migrations applied, deploy mode: 200 when serving, else 503. No secrets."""
    connection = connections["default"]
    body: dict[str, Any] = {"database": "ok", "migrations": "applied"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if pending:
            body["migrations"] = f"{len(pending)} pending"
    except DatabaseError:
        body["database"] = "unreachable"
        body["migrations"] = "unknown"
    current = state.current()
    body["deploy_mode"] = current.enabled
    if body["database"] == "ok":
        body["freeze"], _ = state.agreement(current)
        body["freeze_agrees"] = state.agrees(current, body["freeze"])
    healthy = body["database"] == "ok" and body["migrations"] == "applied"
    body["status"] = "ok" if healthy else "error"
    return JsonResponse(body, status=200 if healthy else 503)


@never_cache
@_allow("GET")
def status(request: HttpRequest) -> JsonResponse:
    """Whether deploy mode is on, why and since when, as this process sees it; who switched it
    (and any error reading the state) only for staff and holders of the deploy token."""
    current = state.current()
    freeze_state, freeze_detail = state.agreement(current)
    database = {"freeze": freeze_state, "freeze_agrees": state.agrees(current, freeze_state)}
    if request.user.is_staff or _token_problem(request) is None:
        return JsonResponse({**current.as_dict(), **database, "freeze_detail": freeze_detail})
    return JsonResponse({**current.as_public_dict(), **database, "detail": STATUS_PUBLIC})


def _token_problem(request: HttpRequest) -> tuple[str, int] | None:
    """None when the request carries the deploy token, else the message and status to answer."""
    token = conf.get("DEPLOYGUARD_TOKEN")
    if not token:
        return ENDPOINT_DISABLED, 404
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not offered:
        return TOKEN_REQUIRED, 401
    if not hmac.compare_digest(offered.strip().encode(), token.encode()):
        return TOKEN_WRONG, 403
    return None


def _error(message: str, status_code: int) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status_code)
    if status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="deployguard"'
    return response


def _payload(request: HttpRequest) -> switch_request.SwitchRequest:
    """The switch the body asks for; ValueError saying what is wrong and what to send."""
    from_form = request.content_type != "application/json"
    try:
        if not from_form:
            data = json.loads(request.body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
        else:
            data = request.POST.dict()
    except (RequestDataTooBig, TooManyFieldsSent) as error:
        raise ValueError(f"the body is too large ({error})") from None
    except MultiPartParserError as error:
        raise ValueError(f"the form body is malformed ({error})") from None
    return switch_request.parse(data, from_form=from_form)


@csrf_exempt  # authenticated by the bearer token, not by a session
@never_cache
@_allow("POST")
def mode(request: HttpRequest) -> JsonResponse:
    """Turn deploy mode on or off; answers once every process has seen the switch."""
    problem = _token_problem(request)
    if problem is not None:
        return _error(*problem)
    try:
        wanted = _payload(request)
    except RecursionError:
        return _error(BAD_REQUEST.replace("{problem}", "the JSON body is nested too deeply"), 400)
    except ValueError as error:
        return _error(BAD_REQUEST.replace("{problem}", str(error)), 400)
    who = f"{wanted.by} via POST /_deploy/mode from {request.META.get('REMOTE_ADDR')}"
    if wanted.mode == "off":
        try:
            current, was_on = state.switch_off(changed_by=who, reason=wanted.reason)
        except DeployModeHeld as error:  # no override here: that is `deploy_mode off --force`'s
            return JsonResponse({**state.current().as_dict(), "error": str(error)}, status=409)
        except DatabaseError as error:
            # Typically the site's least-privileged role, which may not lift the database's freeze.
            return JsonResponse(
                {**state.current().as_dict(), "error": SWITCH_FAILED.format(error=error)}, status=503
            )
        return JsonResponse({**current.as_dict(), "changed": was_on})
    try:
        current, drained = state.switch_on(
            reason=wanted.reason,
            changed_by=who,
            deploy_id=wanted.deploy_id,
            expected_minutes=wanted.expected_minutes,
        )
    except ValueError as error:
        return _error(BAD_REQUEST.replace("{problem}", str(error)), 400)
    except DeployModeAlreadyOn as error:
        return JsonResponse({**error.status.as_dict(), "error": str(error)}, status=409)
    except DrainTimeout as error:
        return JsonResponse({**state.current().as_dict(), "error": str(error)}, status=504)
    except DatabaseError as error:
        return JsonResponse(
            {**state.current().as_dict(), "error": SWITCH_FAILED.format(error=error)}, status=503
        )
    return JsonResponse({**current.as_dict(), "changed": True, "drain": drained})
