"""The Atom feed of recent publications, from the same selector as every public page."""

from __future__ import annotations

import re
from datetime import datetime

from django.contrib.syndication.views import Feed
from django.urls import reverse
from django.utils.feedgenerator import Atom1Feed

from documents.selectors import FEED_SIZE, PublicDocument, feed_documents

# XML 1.0 has no place for most control characters: one in a title would make the feed fail.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

FEED_TITLE = "Published documents"
FEED_SUBTITLE = f"The {FEED_SIZE} most recently published documents."


class LatestDocumentsFeed(Feed):
    feed_type = Atom1Feed
    title = FEED_TITLE
    subtitle = FEED_SUBTITLE

    def link(self) -> str:
        return reverse("documents:index")

    def feed_url(self) -> str:
        return reverse("documents:feed")

    def items(self) -> list[PublicDocument]:
        return feed_documents()

    def item_title(self, item: PublicDocument) -> str:
        return _xml_text(f"{item.name}: {item.title}")

    def item_description(self, item: PublicDocument) -> str:
        return _xml_text(item.title)

    def item_link(self, item: PublicDocument) -> str:
        return reverse("documents:document", args=[item.name])

    def item_author_name(self, item: PublicDocument) -> str:
        return _xml_text(item.author)

    def item_pubdate(self, item: PublicDocument) -> datetime:
        return item.published_at

    def item_updateddate(self, item: PublicDocument) -> datetime:
        return max(filter(None, (item.changed_at, item.published_at)))


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
