"""What readers may see: the one definition of a public document, and the reads of single documents.

`public_drafts()` decides which drafts a reader may see. Every public read (this module,
documents/listing.py, the feed) checks each row it reads against it: its SQL, compiled
once per process and engine, is an EXISTS per row of the read's own index scan. So the
pages pay neither for building it each time (tens of Q objects from the integrity rules,
more Python than the page itself) nor, at any size, for more than the rows they show.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.core.signals import setting_changed
from django.db import connection, models
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from deployguard.integrity import default_registry
from documents.models import DataSource, DraftStatus, PublishedDraft, Submission, SubmissionStatus
from documents.public_sql import aware, fetch, fetch_one

FEED_SIZE = 50

DRAFTS = PublishedDraft._meta.db_table
SUBMISSIONS = Submission._meta.db_table
DraftHistory = PublishedDraft.history.model  # type: ignore[attr-defined]
DRAFT_HISTORY = DraftHistory._meta.db_table
SUBMISSION_HISTORY = Submission.history.model._meta.db_table  # type: ignore[attr-defined]
LISTING_INDEX = "documents_draft_public"  # migration 0004

# Settings that change what the integrity rules flag, and so what readers see.
DEFINING_SETTINGS = frozenset(
    {"DEPLOYGUARD_SILENCED_RULES", "DOCUMENTS_TEST_SUBMITTERS", "DOCUMENTS_TEST_WORDS"}
)


def _breaks_an_error_rule(model: type[models.Model]) -> Q:
    """Rows of `model` breaking an error-level integrity rule now: the rules verify_integrity runs."""
    broken = Q(pk__in=[])
    for rule in default_registry.select():
        if rule.model is model and rule.severity == "error":
            broken |= rule.condition()
    return broken


def public_drafts(*, include_withdrawn: bool = False) -> QuerySet[PublishedDraft]:
    """The drafts a reader may see, newest first: the one definition every public page and the feed use.

    A draft is shown when it is published, production data, legitimate and not quarantined;
    its submission is published, production data, legitimate and not quarantined; neither
    row breaks an error-level integrity rule (documents/integrity.py): no test submitter or
    test word, no row without a creation record naming a user and a reason (raw SQL,
    scripts), no row changed without a history record; and its dates are those its history
    records. `include_withdrawn` adds withdrawn drafts that pass the same rules, whose
    pages answer 410.
    """
    status = Q(status__in=DraftStatus.values) if include_withdrawn else Q(status=DraftStatus.PUBLISHED)
    broken_submission = Submission.objects.filter(
        _breaks_an_error_rule(Submission), pk=OuterRef("submission_id")
    )
    return (
        PublishedDraft.objects.filter(
            status,
            data_source=DataSource.PRODUCTION,
            is_legitimate=True,
            submission__status=SubmissionStatus.PUBLISHED,
            submission__data_source=DataSource.PRODUCTION,
            submission__is_legitimate=True,
        )
        .exclude(_breaks_an_error_rule(PublishedDraft))
        .exclude(Exists(broken_submission))
        .filter(_dates_as_recorded())
        .order_by("-published_at", "-pk")
    )


def _dates_as_recorded() -> Exists:
    """The draft's latest history record holds the dates the pages show. The rules compare the other
    fields a reader sees (name, status, title, author) with the latest records; a date set by raw
    SQL would otherwise be shown, unrecorded, and could pin a document to the top of the listing."""
    latest = (
        DraftHistory.objects.filter(id=OuterRef(OuterRef("pk"))).order_by("-history_id").values("history_id")
    )
    never = Value(datetime(1, 1, 1, tzinfo=UTC))
    return Exists(
        DraftHistory.objects.filter(history_id=Subquery(latest[:1]), published_at=OuterRef("published_at"))
        .alias(withdrawn=Coalesce("withdrawn_at", never))
        .filter(withdrawn=Coalesce(OuterRef("withdrawn_at"), never))
    )


# --- public_drafts() as SQL, for the reads ---------------------------------------------------------

_compiled: dict[tuple[str, bool], str] = {}
_digests: dict[tuple[str, str], str] = {}  # per engine: definition(), decisions_remembered()


def visible(include_withdrawn: bool = False) -> str:
    """ "The drafts row `d` is in public_drafts()", as an SQL condition with its values written in.

    Compiled once per engine, and again when a setting it reads changes. On PostgreSQL,
    `OFFSET 0` keeps the planner from hashing the rules' subqueries over whole tables: it
    cannot see that a page stops after 51 rows, and would rather read every submission once
    than probe 51 of them (seconds instead of milliseconds at a million rows).
    """
    key = (connection.vendor, include_withdrawn)
    if key not in _compiled:
        ids = public_drafts(include_withdrawn=include_withdrawn).order_by().values("pk")
        sql, params = ids.query.get_compiler(connection=connection).as_sql()
        fence = " OFFSET 0" if connection.vendor == "postgresql" else ""
        _compiled[key] = f"EXISTS (SELECT 1 FROM ({_inline(sql, params)}) v WHERE v.pk = d.id{fence})"
    return _compiled[key]


_PLACEHOLDER = re.compile(r"%%|%s")


def _inline(sql: str, params: Any) -> str:
    """The parameters written into the SQL as literals, so that the statement is the same text each time.

    They are the rules' own constants and settings, never a request's. SQLite prepares a
    statement again whenever a value bound to a LIKE or GLOB pattern changes (the rules'
    patterns, each time), and preparing this one costs more than running it; written in,
    the connection's statement cache keeps it prepared. PostgreSQL plans a prepared
    statement's literals as constants, and each read binds a parameter or two, not forty.
    Any % in a literal is doubled: the reads run the SQL with parameters of their own.
    """
    if connection.vendor == "postgresql":
        return connection.ops.compose_sql(sql, params).replace("%", "%%")
    values = iter(params)

    def literal(match: re.Match[str]) -> str:
        if match[0] == "%%":
            return "%%"
        value = next(values)
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str) and "\0" not in value:
            return "'" + value.replace("'", "''").replace("%", "%%") + "'"
        raise TypeError(f"Cannot write {value!r} into SQL as a literal.")

    inlined = _PLACEHOLDER.sub(literal, sql)
    if next(values, None) is not None:
        raise ValueError("More parameters than placeholders.")
    return inlined


def definition() -> str:
    """A digest of what decides visibility (the rules, the settings they read): part of every ETag."""
    key = (connection.vendor, "definition")
    if key not in _digests:
        digest = hashlib.sha256()
        for include_withdrawn in (False, True):
            digest.update(f"{visible(include_withdrawn)}\0".encode())
        _digests[key] = digest.hexdigest()[:16]
    return _digests[key]


def forget_definition() -> None:
    """Compile the definition again on next use (and so key every remembered decision anew)."""
    _compiled.clear()
    _digests.clear()


def _forget_compiled(*, setting: str, **kwargs: Any) -> None:
    if setting in DEFINING_SETTINGS:
        forget_definition()


setting_changed.connect(_forget_compiled, dispatch_uid="documents.selectors")


def from_drafts(*, listing_index: bool = False) -> str:
    """The FROM clause of every read: drafts `d` and their submissions `s`. SQLite is told to walk the
    listing's index where a read goes in its order (its planner sometimes sorts instead)."""
    drafts = f"{DRAFTS} d"
    if listing_index and connection.vendor == "sqlite":
        drafts += f" INDEXED BY {LISTING_INDEX}"
    return f"FROM {drafts} INNER JOIN {SUBMISSIONS} s ON s.id = d.submission_id"


# The listing's own conditions: those of its partial index, written as the index has them, so
# that both engines see that the index applies. public_drafts() holds them too.
LISTABLE = (
    f"d.data_source = '{DataSource.PRODUCTION.value}' AND d.is_legitimate "
    f"AND d.status = '{DraftStatus.PUBLISHED.value}'"
)


# --- documents -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicDocument:
    pk: int
    name: str
    title: str
    author: str
    published_at: datetime
    withdrawn_at: datetime | None = None
    # From the document's own latest history records: its page's ETag and Last-Modified.
    version: str = ""
    changed_at: datetime | None = None

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_at is not None


def _latest(history: str, column: str, key: str) -> str:
    """The column of a row's latest history record: one probe of documents_h*_latest (id, history_id DESC)."""
    return f"(SELECT h.{column} FROM {history} h WHERE h.id = {key} ORDER BY h.history_id DESC LIMIT 1)"


COLUMNS = "d.id AS pk, d.name, d.status, d.published_at, d.withdrawn_at, s.title, s.submitted_by AS author"
_VERSIONED = (  # for public_document(): the free text only when shown (v.shown)
    "d.id AS pk, d.name, d.status, d.published_at, d.withdrawn_at, "
    "CASE WHEN v.shown = 1 THEN s.title END AS title, "
    "CASE WHEN v.shown = 1 THEN s.submitted_by END AS author, "
    f"{_latest(DRAFT_HISTORY, 'history_id', 'd.id')} AS draft_record, "
    f"{_latest(DRAFT_HISTORY, 'history_date', 'd.id')} AS draft_changed, "
    f"{_latest(SUBMISSION_HISTORY, 'history_id', 'd.submission_id')} AS submission_record, "
    f"{_latest(SUBMISSION_HISTORY, 'history_date', 'd.submission_id')} AS submission_changed"
)


def document(row: dict[str, Any]) -> PublicDocument:
    """A PublicDocument from a row of COLUMNS (and, when read, the latest history records)."""
    records = (row.get("draft_record"), row.get("submission_record"))
    changes = [aware(row.get(key)) for key in ("draft_changed", "submission_changed")]
    known = [change for change in changes if change is not None]
    return PublicDocument(
        pk=row["pk"],
        name=row["name"],
        title=row["title"],
        author=row["author"],
        published_at=aware(row["published_at"]),  # type: ignore[arg-type]
        withdrawn_at=aware(row["withdrawn_at"]) if row["status"] == DraftStatus.WITHDRAWN else None,
        version=".".join(str(record) for record in records) if None not in records else "",
        changed_at=max(known) if known else None,
    )


# Every column of a draft and of its submission, and the ids of their latest history records: all
# the rules decide from, history records being only ever added (see public_document()).
_INPUT_EXPRESSIONS = [
    *(f"d.{field.column}" for field in PublishedDraft._meta.concrete_fields),
    *(f"s.{field.column}" for field in Submission._meta.concrete_fields),
    _latest(DRAFT_HISTORY, "history_id", "d.id"),
    _latest(SUBMISSION_HISTORY, "history_id", "d.submission_id"),
]


@cache
def _inputs(vendor: str) -> str:
    """The inputs as text, which is all a key needs and spares SQLite's converters. SQLite's as its type
    and hex bytes: it stores text that is not UTF-8 as it is given (raw SQL can), and reading that as
    text would fail the page of a document nobody may see."""
    if vendor == "sqlite":
        as_text = "typeof({0}) || ':' || hex({0})"
    else:
        as_text = "CAST({0} AS TEXT)"
    return ", ".join(
        f"{as_text.format(expression)} AS input_{i}" for i, expression in enumerate(_INPUT_EXPRESSIONS)
    )


DECISIONS = 4096  # remembered per process


def public_document(name: str) -> PublicDocument | None:
    """The document named exactly `name` if a reader may see it (withdrawn included), with its version.
    None otherwise: missing, quarantined, fake and test rows alike.

    One small query reads the draft and its submission as they are, every column, and the
    ids of their latest history records: everything the rules decide from, since history
    records are only ever added. public_drafts()'s decision for exactly those inputs (and
    this definition) is remembered, so a document nobody changed costs that one query; a
    changed row, a new history record or a new definition is decided again, by a second
    query that reads the inputs and the decision in one statement and is remembered by
    those. (A history record edited in place would go unseen, as it would by the rules.)
    """
    remembered = decisions_remembered()
    if remembered:
        inputs = fetch_one(f"SELECT {_inputs(connection.vendor)} {from_drafts()} WHERE d.name = %s", [name])
        if inputs is None:
            return None
        known = _decisions.get(_key(inputs), _UNDECIDED)
        if known is not _UNDECIDED:
            return known
    # The decision and its inputs in one statement; what a page shows is read only when it is shown
    # (a hidden row's text may not even be UTF-8).
    decided = (
        f"(SELECT d.id AS pk, CASE WHEN {visible(include_withdrawn=True)} THEN 1 ELSE 0 END AS shown "
        f"FROM {DRAFTS} d WHERE d.name = %s) v"
    )
    rows = fetch(
        f"SELECT {_inputs(connection.vendor)}, {_VERSIONED}, v.shown FROM {decided} "
        f"INNER JOIN {DRAFTS} d ON d.id = v.pk INNER JOIN {SUBMISSIONS} s ON s.id = d.submission_id",
        [name],
    )
    if not rows:
        return None
    decision = document(rows[0]) if rows[0]["shown"] else None
    if remembered:
        _decisions.remember(
            _key(tuple(rows[0][f"input_{i}"] for i in range(len(_INPUT_EXPRESSIONS)))), decision
        )
    return decision


def _key(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return (connection.vendor, definition(), inputs)


def decisions_remembered() -> bool:
    """Whether the definition reads nothing but a draft, its submission and their history: the inputs
    public_document() remembers decisions by. A rule that reads another table turns remembering off."""
    key = (connection.vendor, "remembered")
    if key not in _digests:
        inputs = {DRAFTS, SUBMISSIONS, DRAFT_HISTORY, SUBMISSION_HISTORY}
        sql = visible(include_withdrawn=True)
        read = {
            table
            for table in connection.introspection.django_table_names(include_views=False)
            if re.search(rf'(?<![\w"]){re.escape(table)}(?![\w"])|"{re.escape(table)}"', sql)
        }
        _digests[key] = "yes" if read <= inputs else "no"
    return _digests[key] == "yes"


class _Decisions:
    """A bounded map from a document's inputs to public_drafts()'s decision on them, shared by the
    process's threads; the oldest entry goes first."""

    def __init__(self, size: int) -> None:
        self.size, self.entries, self.lock = size, OrderedDict[Any, Any](), threading.Lock()

    def get(self, key: Any, default: Any) -> Any:
        with self.lock:
            if key not in self.entries:
                return default
            self.entries.move_to_end(key)
            return self.entries[key]

    def remember(self, key: Any, decision: Any) -> None:
        with self.lock:
            self.entries[key] = decision
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


_UNDECIDED = object()
_decisions = _Decisions(DECISIONS)


_DATED = (
    f"{COLUMNS}, "
    f"{_latest(DRAFT_HISTORY, 'history_date', 'd.id')} AS draft_changed, "
    f"{_latest(SUBMISSION_HISTORY, 'history_date', 'd.submission_id')} AS submission_changed"
)


def feed_documents(size: int = FEED_SIZE) -> list[PublicDocument]:
    """The newest public documents, each with the time it last changed. One query."""
    sql = (
        f"SELECT {_DATED} {from_drafts(listing_index=True)} WHERE {LISTABLE} AND {visible()} "
        "ORDER BY d.published_at DESC, d.id DESC LIMIT %s"
    )
    return [document(row) for row in fetch(sql, [size])]


# --- versions: what ETag and Last-Modified come from ---------------------------------------------


@dataclass(frozen=True)
class Version:
    """The newest change that can alter a page, as an opaque tag and a time."""

    tag: str
    changed_at: datetime | None


def document_version(found: PublicDocument) -> Version:
    """The version of a document's page: its own latest history records. The services lock the rows
    they change, so two changes to one document commit in the order of their records."""
    tag = hashlib.sha256(f"{definition()}:{found.version}".encode()).hexdigest()[:32]
    return Version(tag=tag, changed_at=found.changed_at)


def site_version() -> Version:
    """The version of the listing and the feed: one query of index probes, whatever the table sizes.

    It reads the newest history record of any draft (publishing, withdrawing, quarantining
    and restoring all write one) and the newest record of a published submission (an edit
    or a quarantine of one; records of submissions not yet published are not the readers'
    business, and stay out of what the headers reveal). On PostgreSQL it adds the database's
    own counters of rows written to the drafts' tables (pg_stat_get_tuples_*), which see
    writes that leave no history record (raw SQL) and a transaction that commits after a
    later one, once the writer's statistics are flushed (at the latest about 10 s after).
    """

    def newest(column: str, table: str, where: str = "") -> str:
        return f"(SELECT {column} FROM {table} {where} ORDER BY history_id DESC LIMIT 1)"

    published = f"WHERE status = '{SubmissionStatus.PUBLISHED.value}'"  # documents_hsub_published
    columns = [
        f"{newest('history_id', DRAFT_HISTORY)} AS draft_record",
        f"{newest('history_date', DRAFT_HISTORY)} AS draft_changed",
        f"{newest('history_id', SUBMISSION_HISTORY, published)} AS submission_record",
        f"{newest('history_date', SUBMISSION_HISTORY, published)} AS submission_changed",
    ]
    params: list[Any] = []
    if connection.vendor == "postgresql":
        columns.append(
            "(SELECT sum(pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid) "
            "+ pg_stat_get_tuples_deleted(c.oid)) FROM pg_class c "
            "WHERE c.oid = ANY(%s::regclass[])) AS written"
        )
        params.append([DRAFTS, DRAFT_HISTORY])
    row = fetch(f"SELECT {', '.join(columns)}", params)[0]
    changes = [aware(row[key]) for key in ("draft_changed", "submission_changed")]
    known = [change for change in changes if change is not None]
    parts = [definition(), row["draft_record"], row["submission_record"], row.get("written")]
    tag = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
    return Version(tag=tag, changed_at=max(known) if known else None)
