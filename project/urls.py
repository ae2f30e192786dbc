"""URL routes: the public site at /, the admin at /admin/, deployguard's endpoints at /_deploy/."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

# Two apps' worth of models: the breadcrumbs and the index are navigation enough, and the
# changelists need the width at 1280 px (every column beside the filters).
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    path("_deploy/", include("deployguard.urls")),
    path("", include("documents.urls")),
]

handler404 = "documents.views.not_found"
