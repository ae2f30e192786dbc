"""The public site's routes: the listing at /, a page per document at /<name>/, the Atom feed."""

from __future__ import annotations

from django.urls import path, re_path

from documents import views

app_name = "documents"

urlpatterns = [
    path("", views.index, name="index"),
    path("feed/", views.feed, name="feed"),
    # Exactly the names the publishing service hands out: "rfc" and digits, lower case.
    re_path(r"^(?P<name>rfc[0-9]{1,18})/\Z", views.document, name="document"),
]
