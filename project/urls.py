"""URL routes: the public site at /, the admin at /admin/, deployguard's endpoints at /_deploy/."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_deploy/", include("deployguard.urls")),
    path("", include("documents.urls")),
]

handler404 = "documents.views.not_found"
