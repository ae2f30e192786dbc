"""URL routes of the project without the documents app: the admin and deployguard's endpoints."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_deploy/", include("deployguard.urls")),
]
