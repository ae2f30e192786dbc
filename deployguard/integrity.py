"""The integrity engine: rules that apps register, evaluated set-based, one pass per table.

A rule names the rows that break it with a `Q` on its model (which may hold `Exists`
subqueries). The engine evaluates every rule of a table in one query of conditional
aggregates, then fetches a sample of primary keys only for the rules that fail: the
number of queries depends on the number of rules, never on the number of rows.

A rule may also say the same thing for a whole-table pass (`table_condition`), reading
another table through a `Joined`: joined once per pass instead of probed once per row.

An app also registers how its rows are quarantined (`Quarantine`): which rows are
quarantined already, and the services that quarantine, restore and purge them. Rules
look only at rows that are not quarantined, unless a rule says otherwise.
deployguard knows nothing of the apps it checks.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BooleanField,
    CharField,
    Count,
    Expression,
    ExpressionWrapper,
    Field,
    Lookup,
    Q,
    Subquery,
    TextField,
)
from django.db.models.lookups import IsNull
from django.db.models.sql import Query
from django.db.models.sql.compiler import SQLCompiler
from django.db.models.sql.constants import LOUTER
from django.utils.module_loading import autodiscover_modules

Severity = Literal["error", "warning"]
SEVERITIES: tuple[Severity, ...] = ("warning", "error")
DEFAULT_SAMPLE_SIZE = 20
LIST_RULES = "`manage.py verify_integrity --list-rules` shows the known ones."
_RULE_ID = re.compile(r"^[a-z_][a-z0-9_]*\.[EW][0-9]{3}$")


class IntegrityError(Exception):
    """Misuse of the engine: an unknown rule id, a rule registered twice, a bad argument."""


@dataclass(frozen=True)
class Joined:
    """Another query's rows, at most one per row of a rule's model, read by a table pass.

    `queryset()` must yield at most one row per key (group by the keys, or make them
    distinct); `on` pairs its key columns with the row's fields. `column(name)` is the
    matching row's value, NULL when there is none: resolving it adds one LEFT OUTER JOIN
    of the whole query to the query being built, however many conditions read it.
    PostgreSQL hash- or merge-joins it once where a correlated subquery inside an
    aggregate's FILTER is one index probe per row.
    """

    alias: str
    queryset: Callable[[], models.QuerySet[Any]]
    on: tuple[tuple[str, str], ...]

    def column(self, name: str) -> JoinedColumn:
        return JoinedColumn(self, name)

    def missing(self) -> Q:
        """No row of the query matches: its key column, never NULL on a match, reads NULL."""
        return Q(IsNull(self.column(self.on[0][0]), True))


class JoinedColumn(Expression):
    """A column of a `Joined`, as an expression that brings its join along when resolved."""

    def __init__(self, joined: Joined, name: str) -> None:
        try:  # a model field (by name or attname), or an annotation of the query
            output_field: Any = joined.queryset().model._meta.get_field(name)
        except FieldDoesNotExist:
            output_field = Field()
        super().__init__(output_field=output_field)
        self.joined, self.name = joined, name

    def resolve_expression(
        self,
        query: Query | None = None,
        allow_joins: bool = True,
        reuse: Any = None,
        summarize: bool = False,
        for_save: bool = False,
    ) -> _JoinedCol:
        if query is None:
            raise IntegrityError(f"Joined column {self.joined.alias}.{self.name} needs a query to join to.")
        if self.joined.alias not in query.alias_map:
            parent = query.get_initial_alias()
            subquery = Subquery(self.joined.queryset()).resolve_expression(query)
            query.alias_map[self.joined.alias] = _DerivedJoin(
                self.joined, parent, self.joined.alias, subquery
            )
            query.alias_refcount[self.joined.alias] = 1
            query.table_map.setdefault(self.joined.alias, []).append(self.joined.alias)
        return _JoinedCol(self.joined.alias, self.name, self.output_field)


class _JoinedCol(Expression):
    def __init__(self, alias: str, name: str, output_field: Field) -> None:
        super().__init__(output_field=output_field)
        self.alias, self.name = alias, name

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        qn = compiler.quote_name_unless_alias
        return f"{qn(self.alias)}.{connection.ops.quote_name(self.name)}", []

    def relabeled_clone(self, change_map: dict[str, str]) -> _JoinedCol:
        return _JoinedCol(change_map.get(self.alias, self.alias), self.name, self.output_field)

    def get_group_by_cols(self) -> list[Expression]:
        return [self]


class _DerivedJoin:
    """`LEFT OUTER JOIN (<the Joined's query>) alias ON alias.key = row.field ...` in a query's FROM."""

    join_type = LOUTER
    nullable = True
    filtered_relation = None

    def __init__(self, joined: Joined, parent_alias: str, table_alias: str, subquery: Subquery) -> None:
        self.joined = joined
        self.parent_alias = parent_alias
        self.table_alias = self.table_name = table_alias
        self.subquery = subquery

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        qn, qn2 = compiler.quote_name_unless_alias, connection.ops.quote_name
        sql, params = compiler.compile(self.subquery)
        opts = compiler.query.get_meta()
        on = " AND ".join(
            f"{qn(self.table_alias)}.{qn2(key)} = "
            f"{qn(self.parent_alias)}.{qn2((opts.pk if field == 'pk' else opts.get_field(field)).column)}"
            for key, field in self.joined.on
        )
        return f"{self.join_type} {sql} {qn(self.table_alias)} ON ({on})", list(params)

    def relabeled_clone(self, change_map: dict[str, str]) -> _DerivedJoin:
        return _DerivedJoin(
            self.joined,
            change_map.get(self.parent_alias, self.parent_alias),
            change_map.get(self.table_alias, self.table_alias),
            self.subquery,
        )

    def demote(self) -> _DerivedJoin:
        return self

    def promote(self) -> _DerivedJoin:
        return self


@dataclass(frozen=True)
class Rule:
    """A rule: `condition()` is the Q that holds for the rows that break it."""

    id: str
    severity: Severity
    model: type[models.Model]
    description: str
    condition: Callable[[], Q]
    # Quarantined rows are known non-production data: rules skip them unless told not to.
    include_quarantined: bool = False
    # The same rows as `condition`, for a pass over the whole table: it may read `Joined`
    # columns, one join per table instead of a probe per row. The engine uses it where joins
    # become hash joins (PostgreSQL) and `condition` everywhere else, so the two must flag
    # exactly the same rows (tests/documents/test_integrity_table_pass.py).
    table_condition: Callable[[], Q] | None = None

    def __post_init__(self) -> None:
        if not _RULE_ID.match(self.id):
            raise IntegrityError(f"Rule id {self.id!r} must look like 'app.E001' or 'app.W001'.")
        if self.severity not in SEVERITIES:
            raise IntegrityError(f"Rule {self.id}: severity must be one of {', '.join(SEVERITIES)}.")
        if (self.severity == "error") != (self.id.split(".")[1][0] == "E"):
            raise IntegrityError(f"Rule {self.id}: E ids are errors and W ids are warnings.")

    @property
    def model_label(self) -> str:
        return self.model._meta.label_lower

    def scoped_condition(self, registry: IntegrityRegistry, *, table_pass: bool = False) -> Q:
        condition = (self.table_condition if table_pass and self.table_condition else self.condition)()
        if self.include_quarantined:
            return condition
        return registry.in_scope(self.model) & condition

    def offending(self, registry: IntegrityRegistry | None = None) -> models.QuerySet[Any]:
        """The rows that break the rule now."""
        return self.model._base_manager.filter(self.scoped_condition(registry or default_registry))


@dataclass(frozen=True)
class Quarantine:
    """How an app puts its rows aside. The callables are the app's own services.

    Each is called with keyword arguments, `model` first:
    quarantine(model=, pks=, reason=) -> {pk: prior state (JSON-serialisable)} for the rows it changed;
    restore(model=, prior={pk: prior state}, reason=) -> number of rows restored;
    purge(model=, pks=, reason=) -> number of rows deleted;
    cascade(queryset of rows of `model`) -> {other model: Q}: rows that must follow them.
    """

    model: type[models.Model]
    is_quarantined: Callable[[], Q]
    quarantine: Callable[..., dict[Any, Any]]
    restore: Callable[..., int]
    purge: Callable[..., int]
    cascade: Callable[[models.QuerySet[Any]], dict[type[models.Model], Q]] | None = None
    # The field that names a row in scrub_fake_data's listings (default: the primary key).
    display_field: str | None = None
    # repair(model=, pks=, reason=) -> rows repaired: put back the values the latest history
    # record holds, for rows of the rules in `repairable` (changed without a record), which
    # scrub_fake_data --repair RULE then restores instead of quarantining.
    repair: Callable[..., int] | None = None
    repairable: tuple[str, ...] = ()


@dataclass
class IntegrityRegistry:
    rules: dict[str, Rule] = field(default_factory=dict)
    quarantines: dict[type[models.Model], Quarantine] = field(default_factory=dict)

    def register(self, *rules: Rule) -> None:
        for rule in rules:
            if rule.id in self.rules and self.rules[rule.id] != rule:
                raise IntegrityError(f"Rule {rule.id} is registered twice.")
            self.rules[rule.id] = rule

    def register_quarantine(self, quarantine: Quarantine) -> None:
        self.quarantines[quarantine.model] = quarantine

    def models(self) -> list[type[models.Model]]:
        """Every model with rules or a quarantine, in registration order."""
        seen: dict[type[models.Model], None] = {}
        for rule in self.rules.values():
            seen.setdefault(rule.model)
        for model in self.quarantines:
            seen.setdefault(model)
        return list(seen)

    def in_scope(self, model: type[models.Model]) -> Q:
        quarantine = self.quarantines.get(model)
        return ~quarantine.is_quarantined() if quarantine else Q()

    def get_model(self, label: str) -> type[models.Model]:
        for model in self.models():
            if model._meta.label_lower == label.lower():
                return model
        known = ", ".join(m._meta.label_lower for m in self.models()) or "none"
        raise IntegrityError(f"No integrity rules are registered for {label!r} (known: {known}).")

    def rule_id(self, written: str) -> str:
        """The registered id that `written` means: the full id in any case ("Documents.e007"),
        or the short id ("E007") when exactly one app registers it. IntegrityError otherwise,
        naming the nearest registered ids."""
        wanted = written.strip().lower()
        names = self._names()
        if wanted in names:
            return names[wanted]
        short = sorted(rule_id for rule_id in self.rules if rule_id.split(".", 1)[1].lower() == wanted)
        if short:
            raise IntegrityError(f"Rule id {written} is ambiguous ({', '.join(short)}): give the full id.")
        close = difflib.get_close_matches(wanted, names, n=6, cutoff=0.6)
        suggestions = list(dict.fromkeys(names[match] for match in close))[:3]
        hint = f" Did you mean {' or '.join(suggestions)}?" if suggestions else ""
        raise IntegrityError(f"Unknown rule id {written}.{hint} {LIST_RULES}")

    def _names(self) -> dict[str, str]:
        """{how a rule may be written, lower-cased: its id}: full ids, and short ids that one app uses."""
        shorts: dict[str, list[str]] = {}
        for rule_id in self.rules:
            shorts.setdefault(rule_id.split(".", 1)[1].lower(), []).append(rule_id)
        names = {short: ids[0] for short, ids in shorts.items() if len(ids) == 1}
        names.update({rule_id.lower(): rule_id for rule_id in self.rules})
        return names

    def select(self, only: Sequence[str] = (), silence: Sequence[str] = ()) -> list[Rule]:
        """The rules to run: `only` if given, minus the silenced ones (settings and `silence`).
        Ids may be written as people write them (`rule_id`); an unknown one is IntegrityError."""
        problems, only_ids, silence_ids = [], [], []
        for written, ids in [*((w, only_ids) for w in only), *((w, silence_ids) for w in silence)]:
            try:
                ids.append(self.rule_id(written))
            except IntegrityError as error:
                problems.append(str(error))
        if problems:
            raise IntegrityError(" ".join(dict.fromkeys(problems)))
        silenced = set(silence_ids) | self.silenced_by_settings()
        chosen = [self.rules[i] for i in dict.fromkeys(only_ids)] if only else list(self.rules.values())
        return [rule for rule in chosen if rule.id not in silenced]

    def silenced_by_settings(self) -> set[str]:
        """DEPLOYGUARD_SILENCED_RULES as registered ids (short ids too); ids of no rule are ignored."""
        silenced = set()
        for written in getattr(settings, "DEPLOYGUARD_SILENCED_RULES", ()):
            try:
                silenced.add(self.rule_id(written))
            except IntegrityError:
                continue
        return silenced


default_registry = IntegrityRegistry()


def register(*rules: Rule) -> None:
    default_registry.register(*rules)


def register_quarantine(quarantine: Quarantine) -> None:
    default_registry.register_quarantine(quarantine)


def autodiscover() -> None:
    """Import every installed app's `integrity` module, where it registers its rules."""
    autodiscover_modules("integrity")


@dataclass
class RuleResult:
    rule: Rule
    count: int
    sample_pks: list[Any] = field(default_factory=list)
    duration: float = 0.0
    origins: dict[Any, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.count > 0


def fails_at(result: RuleResult, fail_level: Severity) -> bool:
    return result.failed and SEVERITIES.index(result.rule.severity) >= SEVERITIES.index(fail_level)


def _by_model(rules: Iterable[Rule]) -> dict[type[models.Model], list[Rule]]:
    grouped: dict[type[models.Model], list[Rule]] = {}
    for rule in rules:
        grouped.setdefault(rule.model, []).append(rule)
    return grouped


def joins_whole_tables(using: str) -> bool:
    """Whether a table pass reads other tables through joins (`Rule.table_condition`).

    PostgreSQL merges or hashes them once per pass. SQLite has no hash join (nor the
    DISTINCT ON that table conditions may use): a join there is an index probe per row,
    which is what the rules' `condition`s already do, so they run as they are.
    """
    return connections[using].vendor == "postgresql"


def evaluate(
    rules: Sequence[Rule],
    *,
    registry: IntegrityRegistry | None = None,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    pks: Sequence[Any] | None = None,
    with_origins: bool = False,
    on_table: Callable[[type[models.Model]], None] | None = None,
) -> list[RuleResult]:
    """Run `rules`: per table, one pass of conditional aggregates, then samples for failures.

    `pks` restricts every rule to those rows (the monitor checks the rows a write touched):
    then the rules probe per row, since a join would read the whole other table for them.
    `on_table(model)` is called as each table is done (progress on a terminal).
    """
    registry = registry or default_registry
    results: list[RuleResult] = []
    for model, model_rules in _by_model(rules).items():
        started = time.perf_counter()
        queryset = model._base_manager.all()
        if pks is not None:
            queryset = queryset.filter(pk__in=list(pks))
        table_pass = pks is None and joins_whole_tables(queryset.db)
        conditions = [rule.scoped_condition(registry, table_pass=table_pass) for rule in model_rules]
        counts = queryset.aggregate(
            **{f"rule_{i}": Count("pk", filter=condition) for i, condition in enumerate(conditions)}
        )
        pass_duration = time.perf_counter() - started
        model_results = []
        for i, (rule, condition) in enumerate(zip(model_rules, conditions, strict=True)):
            result = RuleResult(rule=rule, count=counts[f"rule_{i}"] or 0, duration=pass_duration)
            if result.failed and sample_size:
                started = time.perf_counter()
                result.sample_pks = list(
                    queryset.filter(condition).order_by("pk").values_list("pk", flat=True)[:sample_size]
                )
                result.duration += time.perf_counter() - started
            model_results.append(result)
        if with_origins:
            sampled = {pk for result in model_results for pk in result.sample_pks}
            origins = creation_origins(model, sampled)
            for result in model_results:
                result.origins = {pk: origins[pk] for pk in result.sample_pks}
        results.extend(model_results)
        if on_table is not None:
            on_table(model)
    order = {rule.id: i for i, rule in enumerate(rules)}
    return sorted(results, key=lambda result: order[result.rule.id])


def flag_rows(
    rules: Sequence[Rule],
    model: type[models.Model],
    *,
    registry: IntegrityRegistry | None = None,
    pks: Sequence[Any] | None = None,
) -> dict[Any, list[str]]:
    """{pk: ids of the rules it breaks} for every row of `model` breaking any of `rules`: one query.

    With `pks`, only those rows are looked at (a changelist page): each is probed, never a
    pass over the whole table.
    """
    registry = registry or default_registry
    model_rules = [rule for rule in rules if rule.model is model]
    if not model_rules:
        return {}
    # A pass over the whole table, like evaluate()'s: an OR of correlated EXISTS in WHERE
    # cannot become a semi-join, so there too joins beat a probe per row and rule.
    table_pass = pks is None and joins_whole_tables(model._base_manager.db)
    conditions = [rule.scoped_condition(registry, table_pass=table_pass) for rule in model_rules]
    any_broken = Q()
    for condition in conditions:
        any_broken |= condition
    flags = {
        f"rule_{i}": ExpressionWrapper(condition, output_field=BooleanField())
        for i, condition in enumerate(conditions)
    }
    rows = model._base_manager.filter(any_broken)
    if pks is not None:
        rows = rows.filter(pk__in=pks)
    rows = rows.annotate(**flags).order_by("pk").values("pk", *flags)
    return {row["pk"]: [rule.id for i, rule in enumerate(model_rules) if row[f"rule_{i}"]] for row in rows}


def broken_by_row(
    model: type[models.Model], pk: Any, *, registry: IntegrityRegistry | None = None
) -> list[Rule]:
    """The rules one row breaks now, quarantined or not (for explaining the row)."""
    registry = registry or default_registry
    rules = [rule for rule in registry.rules.values() if rule.model is model]
    if not rules:
        return []
    counts = model._base_manager.filter(pk=pk).aggregate(
        **{f"rule_{i}": Count("pk", filter=rule.condition()) for i, rule in enumerate(rules)}
    )
    return [rule for i, rule in enumerate(rules) if counts[f"rule_{i}"]]


def history_model(model: type[models.Model]) -> type[models.Model] | None:
    """The simple-history model recording `model`'s changes, if there is one."""
    manager_name = getattr(model._meta, "simple_history_manager_attribute", None)
    return getattr(model, manager_name).model if manager_name else None


def creation_origins(model: type[models.Model], pks: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """For each pk, what its first history record says about where it came from: one query."""
    pks = list(pks)
    origins: dict[Any, dict[str, Any]] = {
        pk: {"origin": None, "deploy_id": None, "user": None, "history": "none"} for pk in pks
    }
    history = history_model(model)
    if history is None or not pks:
        return origins
    first_seen: set[Any] = set()
    fields = ["id", "history_type", "history_user_id"]
    has_origin = any(f.name == "history_origin" for f in history._meta.fields)
    if has_origin:
        fields += ["history_origin", "history_deploy_id"]
    records = history._base_manager.filter(id__in=pks).order_by("id", "history_id").values(*fields)
    users = {}
    for record in records:
        if record["id"] in first_seen:
            continue
        first_seen.add(record["id"])
        origins[record["id"]] = {
            "origin": record.get("history_origin") or None,
            "deploy_id": record.get("history_deploy_id") or None,
            "user": record["history_user_id"],
            "history": "created" if record["history_type"] == "+" else "first record is a change",
        }
        users[record["id"]] = record["history_user_id"]
    user_ids = {uid for uid in users.values() if uid is not None}
    if user_ids:
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        names = {u.pk: u.get_username() for u in user_model._base_manager.filter(pk__in=user_ids).only("pk")}
        for pk, uid in users.items():
            origins[pk]["user"] = names.get(uid, uid) if uid is not None else None
    return origins


def describe_origin(origin: dict[str, Any]) -> str:
    if origin["history"] == "none":
        return "no history record (written outside the ORM, e.g. raw SQL)"
    parts = [origin["history"], f"by {origin['user'] or 'no user'}"]
    if origin["origin"]:
        parts.append(f"from {origin['origin']}")
    if origin["deploy_id"]:
        parts.append(f"during deploy {origin['deploy_id']}")
    return " ".join(parts)


# --- matching the backend evaluates natively ---------------------------------------------------

_WORD_CHARS = "A-Za-z0-9_"


@CharField.register_lookup
@TextField.register_lookup
class HasWord(Lookup):
    """`Q(title__has_word=["test", "fake"])`: the value contains one of the words as a whole word.

    Case-insensitive; a word is bounded by the start or end of the value or by a character
    that is not an ASCII letter, digit or underscore ("contest" and "test_user" do not
    contain the word "test"; "Test-User" and "a test." do). PostgreSQL evaluates one `~*`
    with `\\m`/`\\M`; SQLite a LIKE prefilter and a GLOB with character classes, both
    native, instead of Django's REGEXP, which SQLite runs as a Python call per row.
    """

    lookup_name = "has_word"
    prepare_rhs = False

    def _words(self) -> list[str]:
        words = [self.rhs] if isinstance(self.rhs, str) else list(self.rhs)
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError("has_word takes a non-empty list of non-empty words.")
        return [w.strip() for w in words]

    def get_db_prep_lookup(self, value: Any, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        return "%s", [value]

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        raise NotImplementedError(f"has_word supports SQLite and PostgreSQL, not {connection.vendor}.")

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        alternatives = "|".join(re.escape(w) for w in self._words())
        return f"({lhs})::text ~* %s", [*lhs_params, rf"\m({alternatives})\M"]

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        clauses, params = [], []
        for word in self._words():
            like = re.sub(r"([\\%_])", r"\\\1", word)
            glob = "".join(
                f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else re.sub(r"([*?\[])", r"[\1]", c)
                for c in word
            )
            clauses.append(f"({lhs} LIKE %s ESCAPE '\\' AND (' ' || {lhs} || ' ') GLOB %s)")
            params += [*lhs_params, f"%{like}%", *lhs_params, f"*[^{_WORD_CHARS}]{glob}[^{_WORD_CHARS}]*"]
        return "(" + " OR ".join(clauses) + ")", params
