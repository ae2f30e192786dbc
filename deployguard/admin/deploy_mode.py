"""The deploy mode page: the state in human terms, the switch (with a confirmation), its history."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern

from deployguard import humanize, state
from deployguard.admin.base import SWITCH_DEPLOY_MODE, OperationsAdmin, paginate, require
from deployguard.deploy.lock import DeployLock
from deployguard.exceptions import DeployModeAlreadyOn, DrainTimeout
from deployguard.models import DeployModeState, DeployRecord
from deployguard.ownership import DeployModeHeld
from deployguard.views import SWITCH_FAILED

TEMPLATE = "admin/deployguard/deploymodestate/page.html"
CONFIRM_TEMPLATE = "admin/deployguard/deploymodestate/confirm.html"
HISTORY_PER_PAGE = 20

SWITCHED_ON = "Deploy mode is on: every write to the protected tables is refused until it is turned off."
SWITCHED_OFF = "Deploy mode is off: writes are allowed again."
ALREADY_ON = "Deploy mode was already on, so nothing changed: {how}"
ALREADY_OFF = "Deploy mode was already off, so nothing changed."
ALREADY_OFF_NOW = "Deploy mode is off: there is nothing to switch off."
DEPLOY_RUNNING = (
    "A deploy is running ({deploy}): deploy mode belongs to it until it ends, so it cannot be switched "
    "here. Wait for the deploy to finish; if its process died, run `manage.py deploy_safe --recover`."
)
NOT_SWITCHABLE = (
    "Deploy mode is forced on for this server ({how}): the switch here does not lift it. "
    "Restart the server without DEPLOYMENT_MODE."
)
STATE_MOVED = (
    "Deploy mode changed since you opened the confirmation (now: {how}), so nothing was switched: "
    "check the state below and confirm again."
)
DRAIN_TIMED_OUT = "Deploy mode is on, but not every earlier write has finished: {error}"


class SwitchOnForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Shown on the banner and on every refused write, to everyone.",
        error_messages={"required": "Give a reason: it is shown to everyone whose change is refused."},
    )
    expected_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=state.MAX_EXPECTED_MINUTES,
        help_text="Optional. Refused clients are told to retry after this long.",
    )


def running_deploy() -> str:
    """The deploy running now, described, or "" when none is.

    Deploy mode belongs to a running deploy: a DeployRecord still `running`, or the deploy lock
    held (a deploy in its pre-checks has no record yet). The one place the admin asks this.
    """
    record = (
        DeployRecord.objects.filter(status=DeployRecord.Status.RUNNING)
        .only("deploy_id", "started_at", "started_by")
        .order_by("-started_at")
        .first()
    )
    if record is not None:
        return f"deploy {record.deploy_id}, started {humanize.when(record.started_at)} by {record.started_by}"
    return DeployLock().holder()


def _fresh_state() -> state.DeployModeStatus:
    """The state as the database holds it now, not as this process cached it up to a second ago."""
    state.clear_cache()
    return state.current()


def _actor(request: HttpRequest) -> str:
    return f"{request.user.get_username()} via the admin from {request.META.get('REMOTE_ADDR', '?')}"


def _fingerprint(status: state.DeployModeStatus) -> str:
    """What the confirmation was shown for: switching off refuses if the state moved since."""
    return f"{status.enabled}|{status.since.isoformat() if status.since else ''}|{status.deploy_id}"


@admin.register(DeployModeState)
class DeployModeAdmin(OperationsAdmin):
    def get_urls(self) -> list[URLPattern]:
        return [
            self.route("", self.changelist_view, "changelist"),
            self.route("on/", self.switch_on_view, "on", exempt=True),
            self.route("off/", self.switch_off_view, "off", exempt=True),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        return self._page(request, SwitchOnForm())

    def _page(self, request: HttpRequest, form: SwitchOnForm, status_code: int = 200) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        status = state.current()
        # The row's creation (off, before the first switch) is no switch: not listed.
        history = (
            DeployModeState.history.select_related("history_user")
            .exclude(history_type="+", enabled=False)
            .order_by("-history_date", "-history_id")
        )
        switches = paginate(request, history, HISTORY_PER_PAGE)
        on_first_page = switches.number == 1
        return self.page(
            request,
            TEMPLATE,
            title="Deploy mode",
            status=status_code,
            deploy_mode=status,
            description=humanize.deploy_mode(status, private=True),
            switchable=status.source == "database",
            can_switch=request.user.has_perm(SWITCH_DEPLOY_MODE),
            running=running_deploy(),
            form=form,
            latest=switches.object_list[0] if on_first_page and switches.object_list else history.first(),
            page_obj=switches,
        )

    def switch_on_view(self, request: HttpRequest) -> HttpResponse:
        """POST the form: the confirmation page; POST it again with `confirmed`: deploy mode on."""
        if request.method != "POST":
            return HttpResponseRedirect(self.url("changelist"))
        require(request, SWITCH_DEPLOY_MODE)
        form = SwitchOnForm(request.POST)
        if not form.is_valid():
            return self._page(request, form, status_code=400)
        if request.POST.get("confirmed") != "yes":
            return self.page(
                request,
                CONFIRM_TEMPLATE,
                title="Turn deploy mode on?",
                parent_title="Deploy mode",
                switching="on",
                form=form,
                action=self.url("on"),
            )
        running = running_deploy()
        if running:
            self.message_user(request, DEPLOY_RUNNING.format(deploy=running), messages.ERROR)
            return HttpResponseRedirect(self.url("changelist"))
        try:
            state.switch_on(
                reason=form.cleaned_data["reason"],
                changed_by=_actor(request),
                expected_minutes=form.cleaned_data["expected_minutes"],
                user=request.user,
            )
        except DeployModeAlreadyOn as already:
            self.message_user(
                request,
                ALREADY_ON.format(how=humanize.deploy_mode(already.status, private=True)),
                messages.WARNING,
            )
        except DrainTimeout as error:
            self.message_user(request, DRAIN_TIMED_OUT.format(error=error), messages.ERROR)
        except DatabaseError as error:  # the site's least-privileged role cannot install the freeze
            self.message_user(request, SWITCH_FAILED.format(error=error), messages.ERROR)
        else:
            self.message_user(request, SWITCHED_ON, messages.SUCCESS)
        return HttpResponseRedirect(self.url("changelist"))

    def switch_off_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the confirmation page; POST: deploy mode off, if it is still what was confirmed."""
        require(request, SWITCH_DEPLOY_MODE)
        status = _fresh_state()
        if status.enabled and status.source != "database":
            self.message_user(request, NOT_SWITCHABLE.format(how=status.describe()), messages.ERROR)
            return HttpResponseRedirect(self.url("changelist"))
        if request.method != "POST":
            if not status.enabled:
                self.message_user(request, ALREADY_OFF_NOW, messages.INFO)
                return HttpResponseRedirect(self.url("changelist"))
            return self.page(
                request,
                CONFIRM_TEMPLATE,
                title="Turn deploy mode off?",
                parent_title="Deploy mode",
                switching="off",
                description=humanize.deploy_mode(status, private=True),
                fingerprint=_fingerprint(status),
                action=self.url("off"),
            )
        running = running_deploy()
        if running:
            self.message_user(request, DEPLOY_RUNNING.format(deploy=running), messages.ERROR)
            return HttpResponseRedirect(self.url("changelist"))
        if not status.enabled:
            self.message_user(request, ALREADY_OFF, messages.WARNING)
            return HttpResponseRedirect(self.url("changelist"))
        if request.POST.get("fingerprint") != _fingerprint(status):
            how = humanize.deploy_mode(status, private=True)
            self.message_user(request, STATE_MOVED.format(how=how), messages.WARNING)
            return HttpResponseRedirect(self.url("changelist"))
        try:
            _, was_on = state.switch_off(
                changed_by=_actor(request),
                reason=f"Turned off in the admin by {request.user.get_username()}",
                user=request.user,
            )
        except DeployModeHeld as error:  # a deploy took the lock since the check above
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(self.url("changelist"))
        except DatabaseError as error:  # the site's least-privileged role cannot lift the freeze
            self.message_user(request, SWITCH_FAILED.format(error=error), messages.ERROR)
            return HttpResponseRedirect(self.url("changelist"))
        self.message_user(
            request, SWITCHED_OFF if was_on else ALREADY_OFF, messages.SUCCESS if was_on else messages.WARNING
        )
        return HttpResponseRedirect(self.url("changelist"))
