"""The first middleware: unsafe requests get a 503 while deploy mode is on; safe ones pass untouched."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from deployguard import conf, state
from deployguard.exceptions import DeployModeActive
from deployguard.state import DeployModeStatus

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
REFUSAL_TEMPLATE = "deployguard/deploy_mode.html"
REFUSED_REQUEST = (
    "The site is being deployed: changes are paused and nothing was saved. Try again in a few minutes."
)


class DeployModeMiddleware:
    """Refuse unsafe requests with 503 + Retry-After while deploy mode is on.

    Safe methods return straight away, with no query; an unsafe request asks the state
    once (usually from the process's cache). POST /_deploy/mode is let through: it
    authenticates with its own token.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        conf.validate()
        self.get_response = get_response
        self._mode_path: str | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in SAFE_METHODS:
            return self.get_response(request)
        if request.path == self.mode_path:
            return self.get_response(request)
        status = state.current()
        if status.enabled:
            return refusal_response(request, status)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # A view that writes on a safe method, or a write that raced the switch.
        if isinstance(exception, DeployModeActive):
            return refusal_response(request, exception.status)
        return None

    @property
    def mode_path(self) -> str:
        if self._mode_path is None:
            try:
                self._mode_path = reverse("deployguard:mode")
            except NoReverseMatch:
                self._mode_path = ""
        return self._mode_path


def wants_json(request: HttpRequest) -> bool:
    preferred = request.get_preferred_type(["text/html", "application/json"])
    if preferred == "application/json":
        return True
    explicit_html = "text/html" in request.headers.get("Accept", "")
    return not explicit_html and request.content_type == "application/json"


def refusal_response(request: HttpRequest, status: DeployModeStatus) -> HttpResponse:
    retry_after = status.retry_after(conf.get("DEPLOYGUARD_RETRY_AFTER"))
    if wants_json(request):
        response: HttpResponse = JsonResponse(
            {
                "error": "deploy_mode",
                "detail": REFUSED_REQUEST,
                "retry_after": retry_after,
                "deploy_mode": status.as_public_dict(),
            },
            status=503,
        )
    else:
        # No request context: rendering must not load the session or the user. So the page
        # cannot tell staff from anyone else and shows only what anyone may see.
        html = render_to_string(
            REFUSAL_TEMPLATE,
            {"message": REFUSED_REQUEST, "description": status.describe_public(), "retry_after": retry_after},
        )
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(retry_after)
    response["X-Deploy-Mode"] = "on"
    response["Cache-Control"] = "no-store"
    return response
