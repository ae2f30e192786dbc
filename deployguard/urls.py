"""Routes for the /_deploy/ endpoints; include them at "_deploy/" under the namespace "deployguard"."""

from __future__ import annotations

from django.urls import path

from deployguard import views

app_name = "deployguard"
urlpatterns = [
    path("health", views.health, name="health"),
    path("status", views.status, name="status"),
    path("mode", views.mode, name="mode"),
]
