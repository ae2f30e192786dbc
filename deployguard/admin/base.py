"""What every operations page shares: its permissions, read-only models, and the admin's frame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from deployguard.middleware import deploy_mode_exempt

VIEW_OPERATIONS = "deployguard.view_operations"
SWITCH_DEPLOY_MODE = "deployguard.switch_deploy_mode"
RESTORE_SCRUBRUN = "deployguard.restore_scrubrun"
PAGE_VAR = "p"


def require(request: HttpRequest, permission: str) -> None:
    """403 unless the user holds `permission` (superusers hold every one)."""
    if not request.user.has_perm(permission):
        raise PermissionDenied


class OperationsAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A read-only operations page, for holders of deployguard.view_operations.

    No add, change or delete: what these pages change, they change through deployguard's
    own functions (the deploy-mode switch, a quarantine run's restore), each behind its own
    permission, checked in the view.
    """

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(VIEW_OPERATIONS)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW_OPERATIONS)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def route(
        self, route: str, view: Callable[..., HttpResponse], name: str, *, exempt: bool = False
    ) -> URLPattern:
        """An admin view of this page at `route`, named `<app>_<model>_<name>`.

        `exempt`: the view may take POSTs while deploy mode is on, because it writes only
        deployguard's own tables (see deployguard.middleware.deploy_mode_exempt).
        """
        wrapped = self.admin_site.admin_view(deploy_mode_exempt(view) if exempt else view)
        wrapped.model_admin = self  # type: ignore[attr-defined]
        opts = self.model._meta
        return path(route, wrapped, name=f"{opts.app_label}_{opts.model_name}_{name}")

    def url(self, name: str, *args: Any) -> str:
        opts = self.model._meta
        return reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{name}", args=args)

    def page(
        self, request: HttpRequest, template: str, *, title: str, status: int = 200, **context: Any
    ) -> TemplateResponse:
        """Render an operations page in the admin's frame: header, sidebar, breadcrumbs, dark mode."""
        opts = self.model._meta
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": opts,
                "app_label": opts.app_label,
                "title": title,
                "changelist_url": self.url("changelist"),
                **context,
            },
            status=status,
        )


def paginate(request: HttpRequest, items: Any, per_page: int) -> Page:
    """The page of `items` the request asks for (`?p=`); the last one when it asks past the end."""
    return Paginator(items, per_page).get_page(request.GET.get(PAGE_VAR))
