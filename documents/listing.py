"""The public listing: pages newest first by keyset on (published_at, id), and a bounded search.

No page counts rows or skips them with OFFSET: a page starts after a cursor (the last row
the reader saw) and reads the listing's index from there, so page 20,000 costs what page
1 does. Every row is checked against documents.selectors.public_drafts() as it is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction

from documents.public_sql import aware, fetch
from documents.selectors import (
    COLUMNS,
    DRAFTS,
    LISTABLE,
    SUBMISSIONS,
    PublicDocument,
    document,
    from_drafts,
    visible,
)

PAGE_SIZE = 50
SEARCH_MAX_LENGTH = 100
SEARCH_MAX_WORDS = 6
# PostgreSQL: a word search first looks for a page of candidates among this many of the newest
# listed drafts (a common word), then asks the title index for at most SEARCH_RARE submissions;
# a word matching more, but not among the newest, is read for in listing order.
SEARCH_PROBE = 1_000
SEARCH_RARE = 10_000
# ...and nothing a search runs may take longer (a cancelled search says so).
SEARCH_TIMEOUT_MS = 3_000
# SQLite has no word index that the deploy freeze can live with (FTS5 tables are virtual and
# take no trigger): a search reads at most this many of the newest listed drafts per request,
# and offers to go further back.
SEARCH_WINDOW = 20_000
# A search checks the visibility rules on at most this many matching drafts per page.
SEARCH_CANDIDATES = 2 * PAGE_SIZE

QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled by its timeout

Condition = tuple[str, list[Any]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^([0-9]{1,17})\.([0-9]{1,18})\Z")  # at most year 5138, and a 63-bit id
_NAME = re.compile(r"^rfc\s*-?\s*([0-9]{1,18})\Z", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")  # letters and digits: nothing LIKE or a tsquery would read as syntax
_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Cursor:
    """A position in the listing: a row's (published_at, id). Its token is what ?before= and ?after= carry."""

    published_at: datetime
    pk: int

    @property
    def token(self) -> str:
        return f"{(self.published_at - _EPOCH) // timedelta(microseconds=1)}.{self.pk}"

    @classmethod
    def parse(cls, token: str) -> Cursor | None:
        """The cursor a token names; None for anything that is not one."""
        match = _CURSOR.match(token)
        if not match:
            return None
        return cls(_EPOCH + timedelta(microseconds=int(match[1])), int(match[2]))

    @classmethod
    def of(cls, found: PublicDocument) -> Cursor:
        return cls(found.published_at, found.pk)


def clean_search_text(raw: str) -> str:
    """What the search box holds, as the site shows it back: control characters dropped, spaces
    collapsed, at most SEARCH_MAX_LENGTH characters (cut at a word)."""
    text = " ".join(_NOT_PRINTABLE.sub(" ", raw).split())
    if len(text) > SEARCH_MAX_LENGTH:
        text = text[: SEARCH_MAX_LENGTH + 1].rsplit(" ", 1)[0][:SEARCH_MAX_LENGTH]
    return text


@dataclass(frozen=True)
class Search:
    """What the search box asked for: a document name, or words that must all begin words of the title."""

    text: str
    name: str | None = None
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str) -> Search | None:
        """Bounded: control characters dropped, at most SEARCH_MAX_LENGTH characters (cut at a word) and
        SEARCH_MAX_WORDS words. None when nothing searchable is left."""
        text = clean_search_text(raw)
        name = _NAME.match(text)
        if name:
            return cls(text=text, name=f"rfc{name[1]}")
        words = tuple(dict.fromkeys(word.lower() for word in _WORD.findall(text)))[:SEARCH_MAX_WORDS]
        return cls(text=text, words=words) if words else None


@dataclass(frozen=True)
class Page:
    documents: list[PublicDocument]
    older: Cursor | None = None  # where the next, older page starts (?before=)
    newer: Cursor | None = None  # where the previous, newer page starts (?after=)
    # SQLite searches: the window ended here before a page was full; searching goes on before it.
    searched_to: Cursor | None = None
    # PostgreSQL searches: cancelled after SEARCH_TIMEOUT_MS.
    timed_out: bool = False


def _ranges(start: Cursor | None, end: Cursor | None, *, newer: bool) -> list[Condition]:
    """The listing after `start` (excluded) and, going back, down to `end` (included), as ranges of its
    index on (published_at, id): each read in order, and stopped where it ends.

    PostgreSQL reads a row-value comparison as one range of the index. SQLite reads it as a
    range of its first column only, and so every draft published in the same instant (all
    of a bulk import) before the first row it returns: there the listing is cut into the
    ranges that the comparison means, one SELECT each.
    """
    at = connection.ops.adapt_datetimefield_value
    if connection.vendor == "postgresql" and end is None:
        if start is None:
            return [("1 = 1", [])]
        beyond = ">" if newer else "<"
        return [(f"(d.published_at, d.id) {beyond} (%s, %s)", [at(start.published_at), start.pk])]
    if newer:
        if start is None:
            return [("1 = 1", [])]
        return [
            ("d.published_at = %s AND d.id > %s", [at(start.published_at), start.pk]),
            ("d.published_at > %s", [at(start.published_at)]),
        ]
    if start is not None and end is not None and start.published_at == end.published_at:
        return [
            ("d.published_at = %s AND d.id < %s AND d.id >= %s", [at(start.published_at), start.pk, end.pk])
        ]
    ranges: list[Condition] = []
    if start is not None:
        ranges.append(("d.published_at = %s AND d.id < %s", [at(start.published_at), start.pk]))
    between = [("d.published_at < %s", [at(start.published_at)])] if start else []
    between += [("d.published_at > %s", [at(end.published_at)])] if end else []
    ranges.append(
        (
            " AND ".join(sql for sql, _ in between) or "1 = 1",
            [value for _, values in between for value in values],
        )
    )
    if end is not None:
        ranges.append(("d.published_at = %s AND d.id >= %s", [at(end.published_at), end.pk]))
    return ranges


def _ordered_sql(
    columns: str,
    conditions: list[Condition],
    start: Cursor | None,
    *,
    newer: bool = False,
    end: Cursor | None = None,
    limit: int,
    offset: int = 0,
) -> tuple[str, list[Any]]:
    """The listed rows meeting `conditions` between `start` and `end` (see _ranges), in listing order
    (oldest first with `newer`): one SELECT per range of the index, each stopped at the limit."""
    direction = "ASC" if newer else "DESC"
    order = f"ORDER BY d.published_at {direction}, d.id {direction}"
    where = " AND ".join(sql for sql, _ in conditions)
    params = [value for _, values in conditions for value in values]
    branches = [
        (f"SELECT {columns} {from_drafts(listing_index=True)} WHERE {where} AND {sql}", [*params, *values])
        for sql, values in _ranges(start, end, newer=newer)
    ]
    if len(branches) == 1:
        sql, values = branches[0]
        return f"{sql} {order} LIMIT %s OFFSET %s", [*values, limit, offset]
    union = " UNION ALL ".join(
        f"SELECT * FROM ({sql} {order} LIMIT %s) r{index}" for index, (sql, _) in enumerate(branches)
    )
    values = [value for _, branch_values in branches for value in (*branch_values, offset + limit)]
    return (
        f"{union} ORDER BY published_at {direction}, pk {direction} LIMIT %s OFFSET %s",
        [*values, limit, offset],
    )


def _ordered(
    columns: str, conditions: list[Condition], start: Cursor | None, **kwargs: Any
) -> list[dict[str, Any]]:
    return fetch(*_ordered_sql(columns, conditions, start, **kwargs))


def public_page(
    *, before: Cursor | None = None, after: Cursor | None = None, search: Search | None = None
) -> Page:
    """A page of PAGE_SIZE public documents, newest first: the first, the one before a cursor, or after one.

    Queries: one for the page, and one more with a cursor (is there a page on the other
    side?). A search goes forward only and costs at most two queries (see _search).
    """
    if search is not None:
        return _search(search, before)
    cursor, newer = (after, True) if after is not None else (before, False)
    conditions: list[Condition] = [(LISTABLE, []), (visible(), [])]
    rows = _ordered(COLUMNS, conditions, cursor, newer=newer, limit=PAGE_SIZE + 1)
    documents = [document(row) for row in rows[:PAGE_SIZE]]
    more = len(rows) > PAGE_SIZE
    if newer:
        documents.reverse()
    other_side = False
    if cursor is not None:
        edge = Cursor.of(documents[-1] if newer else documents[0]) if documents else cursor
        other_side = bool(_ordered("d.id AS pk, d.published_at", conditions, edge, newer=not newer, limit=1))
    first = Cursor.of(documents[0]) if documents else None
    last = Cursor.of(documents[-1]) if documents else None
    if newer:
        return Page(documents, older=last if other_side else None, newer=first if more else None)
    return Page(documents, older=last if more else None, newer=first if other_side else None)


def _search(search: Search, before: Cursor | None) -> Page:
    """A page of search results, going back from `before`. A name is one probe of its unique index.

    Words find candidates first, in listing order and at most SEARCH_CANDIDATES of them,
    without the visibility rules; only those candidates are then checked against them, in
    the same query. So a search costs the rules on at most SEARCH_CANDIDATES rows, whatever
    it matches; a page may show fewer than PAGE_SIZE rows when candidates are hidden, and
    the next page goes on after the last candidate.

    PostgreSQL: the title index (GIN) names at most SEARCH_RARE matching submissions, whose
    drafts are then sorted; a search matching more is common enough that the listing read
    in order meets candidates quickly. In a transaction without JIT (whose compilation
    would take longer than the search) and under a statement timeout.
    SQLite: the SEARCH_WINDOW newest drafts before the cursor, their titles matched with
    LIKE (case-insensitive for ASCII letters only).
    """
    if search.name is not None:
        rows = fetch(
            f"SELECT {COLUMNS} {from_drafts()} WHERE d.name = %s AND {LISTABLE} AND {visible()}",
            [search.name],
        )
        return Page([document(row) for row in rows])
    if connection.vendor == "postgresql":
        return _search_postgresql(search.words, before)
    return _search_sqlite(search.words, before)


def _candidates_page(matching: list[Condition], before: Cursor | None, end: Cursor | None = None) -> Page:
    """Up to SEARCH_CANDIDATES listed drafts matching, in listing order, each flagged with whether a reader
    may see it; a page of those that are."""
    candidates, params = _ordered_sql(
        "d.id AS pk, d.published_at", [(LISTABLE, []), *matching], before, end=end, limit=SEARCH_CANDIDATES
    )
    rows = fetch(
        f"SELECT {COLUMNS}, CASE WHEN {visible()} THEN 1 ELSE 0 END AS shown "
        f"FROM ({candidates}) c INNER JOIN {DRAFTS} d ON d.id = c.pk INNER JOIN {SUBMISSIONS} s "
        "ON s.id = d.submission_id ORDER BY c.published_at DESC, c.pk DESC",
        params,
    )
    shown = [document(row) for row in rows if row["shown"]]
    if len(shown) > PAGE_SIZE:
        return Page(shown[:PAGE_SIZE], older=Cursor.of(shown[PAGE_SIZE - 1]))
    if len(rows) == SEARCH_CANDIDATES:
        return Page(shown, older=Cursor(aware(rows[-1]["published_at"]), rows[-1]["pk"]))  # type: ignore[arg-type]
    return Page(shown)


def _search_postgresql(words: tuple[str, ...], before: Cursor | None) -> Page:
    # Letters and digits only, quoted as lexemes, each a prefix: nothing to_tsquery can fail on.
    query = " & ".join(f"'{word}':*" for word in words)
    matches = "to_tsvector('simple'::regconfig, {title}) @@ to_tsquery('simple'::regconfig, %s)"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {int(SEARCH_TIMEOUT_MS)}")
            cursor.execute("SET LOCAL jit = off")
            # A common word first: the newest SEARCH_PROBE listed drafts hold a page of candidates,
            # found without the title index (whose bitmap of a common word is the whole table).
            newest, params = _ordered_sql("d.id AS pk, s.title", [(LISTABLE, [])], before, limit=SEARCH_PROBE)
            probed = fetch(
                f"SELECT w.pk FROM ({newest}) w WHERE {matches.format(title='w.title')} LIMIT %s",
                [*params, query, SEARCH_CANDIDATES],
            )
            if len(probed) == SEARCH_CANDIDATES:
                return _candidates_page([("d.id = ANY(%s)", [[row["pk"] for row in probed]])], before)
            # A rarer one: the title index names its submissions, whose drafts are then sorted.
            rare = fetch(
                f"SELECT s.id FROM {SUBMISSIONS} s WHERE {matches.format(title='s.title')} LIMIT %s",
                [query, SEARCH_RARE + 1],
            )
            if len(rare) <= SEARCH_RARE:
                return _candidates_page(
                    [("d.submission_id = ANY(%s)", [[row["id"] for row in rare]])], before
                )
            # Common in older documents only: read the listing in order (no sort), each title
            # checked as it comes; IS TRUE keeps the title index out of it.
            cursor.execute("SET LOCAL enable_sort = off")
            return _candidates_page([(f"({matches.format(title='s.title')}) IS TRUE", [query])], before)
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) == QUERY_CANCELED:
            return Page([], timed_out=True)
        raise


def _search_sqlite(words: tuple[str, ...], before: Cursor | None) -> Page:
    listed: list[Condition] = [(LISTABLE, [])]
    window = _ordered("d.id AS pk, d.published_at", listed, before, limit=1, offset=SEARCH_WINDOW - 1)
    edge = Cursor(aware(window[0]["published_at"]), window[0]["pk"]) if window else None  # type: ignore[arg-type]
    # Words hold no % or _ (letters and digits only): nothing in them LIKE would read as a wildcard.
    page = _candidates_page([("s.title LIKE %s", [f"%{word}%"]) for word in words], before, end=edge)
    if edge is not None and page.older is None:
        return Page(page.documents, searched_to=edge)
    return page
