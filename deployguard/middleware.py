"""The first middleware: unsafe requests get a 503 while deploy mode is on; safe ones pass untouched."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.admin.sites import all_sites
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, Resolver404, ResolverMatch, resolve, reverse
from django.utils.text import capfirst

from deployguard import conf, humanize, logs, state
from deployguard.exceptions import DeployModeActive
from deployguard.state import DeployModeStatus

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
REFUSAL_TEMPLATE = "deployguard/deploy_mode.html"
ADMIN_REFUSAL_TEMPLATE = "deployguard/deploy_mode_admin.html"
REFUSED_REQUEST = (
    "The site is being deployed: changes are paused and nothing was saved. Try again in a few minutes."
)
REFUSED_CHANGE = (
    "Your change was not saved: the site is being deployed, and changes are paused until the deploy "
    "ends. Nothing you typed was stored. Go back (your browser's Back button usually keeps what you "
    "typed) and save again once the deploy is over."
)
LOGIN_PAUSED = (
    "Logging in is paused while the site is being deployed: logging in writes to your account (the "
    "time of your last login), and every write is paused until the deploy ends. If you are logged in "
    "already, reading pages keeps working."
)
TRY_AGAIN = "Try again in {span}. Reading pages keeps working meanwhile."
SAVE_PAUSED = "Saving is paused while deploy mode is on: nothing can be saved until the deploy ends."
ACTIONS_PAUSED = "Actions are paused while deploy mode is on."
PAUSED_MESSAGES = {"login": LOGIN_PAUSED, "save": SAVE_PAUSED, "actions": ACTIONS_PAUSED}
"""What the admin's disabled forms say while deploy mode is on (`{% paused_message "save" %}`)."""

View = Callable[..., HttpResponse]


def deploy_mode_exempt(view: View) -> View:
    """Let a view take unsafe requests while deploy mode is on.

    Only for views that write nothing but deployguard's own tables (the switch, the
    integrity counts) and check their caller's permissions themselves; CSRF still applies.
    """

    @wraps(view)
    def exempt(*args: Any, **kwargs: Any) -> HttpResponse:
        return view(*args, **kwargs)

    exempt.deploy_mode_exempt = True  # type: ignore[attr-defined]
    return exempt


class DeployModeMiddleware:
    """Refuse unsafe requests with 503 + Retry-After while deploy mode is on.

    Safe methods return straight away, with no query; an unsafe request asks the state
    once (usually from the process's cache). POST /_deploy/mode is let through: it
    authenticates with its own token; so are views marked `deploy_mode_exempt`.
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
        if status.enabled and not is_exempt(request):
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


def _match(request: HttpRequest) -> ResolverMatch | None:
    try:
        return resolve(request.path_info)
    except Resolver404:
        return None


def is_exempt(request: HttpRequest) -> bool:
    match = _match(request)
    return match is not None and getattr(match.func, "deploy_mode_exempt", False)


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
        response = HttpResponse(refusal_page(request, status, retry_after), status=503)
    response["Retry-After"] = str(retry_after)
    response["X-Deploy-Mode"] = "on"
    response["Cache-Control"] = "no-store"
    logs.log_refusal(request, response.status_code)
    return response


def refusal_page(request: HttpRequest, status: DeployModeStatus, retry_after: int) -> str:
    """The 503 page: inside the admin's frame for an admin URL, a plain page elsewhere.

    It is rendered before sessions load, so it cannot tell staff from anyone else: it shows
    only what anyone may see (not who switched deploy mode, nor from which host).
    """
    context: dict[str, Any] = {
        "message": REFUSED_REQUEST,
        "description": humanize.deploy_mode(status, private=False),
        "retry": TRY_AGAIN.format(span=humanize.span(retry_after)),
    }
    admin_frame = _admin_frame(request)
    if admin_frame is None:
        return render_to_string(REFUSAL_TEMPLATE, context)
    return render_to_string(ADMIN_REFUSAL_TEMPLATE, {**context, **admin_frame}, request=request)


def _admin_frame(request: HttpRequest) -> dict[str, Any] | None:
    """The admin site, page and breadcrumbs of an admin URL, or None for any other URL."""
    match = _match(request)
    site = next((s for s in all_sites if match is not None and s.name == match.namespace), None)
    if match is None or site is None:
        return None
    login = match.url_name == "login"
    frame: dict[str, Any] = {
        "site_header": site.site_header,
        "site_title": site.site_title,
        "title": "Logging in is paused" if login else "Change not saved",
        "message": LOGIN_PAUSED if login else REFUSED_CHANGE,
        "index_url": reverse(f"{site.name}:index"),
        # One leading slash: "//host/..." would be another site's address.
        "back_url": "/" + request.get_full_path().lstrip("/"),
        "crumbs": [],
    }
    model_admin = getattr(match.func, "model_admin", None)
    if model_admin is not None:
        opts = model_admin.model._meta
        frame["crumbs"] = [
            (opts.app_config.verbose_name, reverse(f"{site.name}:app_list", args=[opts.app_label])),
            (
                capfirst(opts.verbose_name_plural),
                reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_changelist"),
            ),
        ]
    return frame
