"""URL routes: the admin at /admin/, deployguard's endpoints at /_deploy/, the root redirects to the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_deploy/", include("deployguard.urls")),
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
]
