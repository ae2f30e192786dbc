"""The write-path policy: which findings are violations, configured by DEPLOYGUARD_WRITE_PATHS."""

from __future__ import annotations

import fnmatch
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from deployguard import seal
from deployguard.write_paths.scanner import (
    DEFAULT_EXCLUDED_DIRS,
    ENTRY,
    FIXTURE_ROWS,
    LIFT,
    MODULE_IMPORT,
    PRIVATE_API,
    RAW_SQL_SCHEMA,
    RUNTIME_MANAGER,
    SEAL_OPENED,
    THROUGH,
    WRITE,
    Finding,
    ModelIndex,
    ScanResult,
    scan_tree,
)

SETTING = "DEPLOYGUARD_WRITE_PATHS"
UNKNOWN_MODEL = "?"
SETTING_KEYS = frozenset({"root", "allowed", "startup_allowed", "lifts_allowed", "protected", "exclude"})

# deployguard's own places that write other apps' (protected) tables, named function by function
# (relative to its package): the restore puts a backup back and drops the tables it did not hold,
# and the job queue is carried across it. Nothing else of this package may.
OWN_WRITES = (
    "backup.py::restore_database",
    "backup.py::_drop_tables_not_in",
    "jobs/queue.py::kept_across_restore",
)
# deployguard's own places that open a way through deploy mode: the switch (off) where an operator
# or a deploy turns it off, the freeze's own DDL, the restore, the migrations a deploy runs.
OWN_LIFTS = (
    "state.py::switch_off",
    "freeze.py::freeze",
    "freeze.py::thaw",
    "freeze_sqlite.py::install",
    "freeze_sqlite.py::drop",
    "backup.py::restore_database",
    "deploy/child.py::prepare_process",
    "deploy/child.py::install_data_migration_allowance.apply",
    "deploy/run.py::_deploy_mode_off",
    "management/commands/deploy_safe_migrate.py::Command.handle",
    "management/commands/deploy_mode.py::Command.turn_off",
    "admin/deploy_mode.py::DeployModeAdmin.switch_off_view",
    "views.py::mode",
)

OUTSIDE_ALLOWED = "writes protected model {model} outside the allowed places; move the write into a service"
PRIVATE_ROUTE = (
    "writes through {how}, around the models' own save(), delete() and managers (and their guards); "
    "move the write into a service and use the public API there"
)
SEAL_OUTSIDE_WRITERS = "opens a seal ({detail}) outside {writers}; call a service instead"
LIFT_OUTSIDE = (
    "lifts the deploy-mode guard ({detail}) in application code; only deployguard's own pipeline may, "
    "in the places DEPLOYGUARD_WRITE_PATHS['lifts_allowed'] names"
)
FIXTURE_SHIPS_PROTECTED = "ships rows of protected model {model}, which `loaddata` would write"
STARTUP_WRITE = "runs at start-up: {how}; start-up code must not write"
REACHED_FROM = "reached from {root_kind} {root} ({root_file}:{root_line}){via}"
RUNS_ON_IMPORT = "runs when {module} is imported"

UNKNOWN_SETTING = "{setting} has unknown keys {keys}; the keys are {known}."
NOT_A_LIST = "{setting}[{key!r}] must be a list of strings, got {value!r}."
UNKNOWN_PROTECTED = (
    "{setting}['protected'] names {pattern!r}, which matches no installed model; "
    "use app_label.ModelName or app_label.*."
)
NOT_A_DIRECTORY = "The audit root {root} is not a directory; pass --root or set {setting}['root']."


@dataclass(frozen=True)
class AuditConfig:
    root: Path
    index: ModelIndex
    protected: frozenset[str]
    allowed: tuple[str, ...] = ()
    startup_allowed: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    lifts_allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Violation:
    finding: Finding
    reason: str


@dataclass
class AuditReport:
    config: AuditConfig
    findings: list[Finding]
    violations: list[Violation]
    files_scanned: int
    seconds: float
    errors: list[str] = field(default_factory=list)
    function_writes: dict[str, set[str]] = field(default_factory=dict)
    """Functions that write, directly or through project functions they call: key -> models."""

    @property
    def writes(self) -> list[Finding]:
        return [f for f in self.findings if f.category == WRITE]

    @property
    def lifts(self) -> list[Finding]:
        return [f for f in self.findings if f.category == LIFT]

    @property
    def entry_points(self) -> list[Finding]:
        return [f for f in self.findings if f.category == ENTRY]


def model_index() -> ModelIndex:
    """Every installed model: by dotted class path, by table, by label."""
    classes: dict[str, str] = {}
    tables: dict[str, str] = {}
    labels: dict[str, str] = {}
    for model in apps.get_models(include_auto_created=True):
        label = model._meta.label
        classes[f"{model.__module__}.{model.__qualname__}"] = label
        # `from app.models import X` works for a model defined in a submodule of app.models.
        classes.setdefault(f"{model._meta.app_config.name}.models.{model.__name__}", label)
        tables[model._meta.db_table.lower()] = label
        labels[label.lower()] = label
    user_model = getattr(settings, "AUTH_USER_MODEL", None)
    return ModelIndex(
        classes, tables, labels, labels.get(user_model.lower()) if user_model else None, seal.openers()
    )


def _own_app_label() -> str:
    config = apps.get_containing_app_config(__name__)
    return config.label if config else "deployguard"


def _is_project_app(path: str, root: Path) -> bool:
    try:
        relative = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return not any(part in DEFAULT_EXCLUDED_DIRS or part.startswith(".") for part in relative.parts)


def _strings(options: dict[str, Any], key: str) -> tuple[str, ...]:
    value = options.get(key, [])
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ImproperlyConfigured(NOT_A_LIST.format(setting=SETTING, key=key, value=value))
    return tuple(value)


def config_from_settings(root: Path | None = None) -> AuditConfig:
    """The audit's configuration; raises ImproperlyConfigured when the setting is wrong.

    Defaults: the root is BASE_DIR; protected is every model of an app whose code lives
    under the root, except this app's own bookkeeping; of this app's own package, only the
    functions OWN_WRITES names may write protected models, and only those OWN_LIFTS names may
    lift the deploy-mode guard.
    """
    options: dict[str, Any] = dict(getattr(settings, SETTING, {}) or {})
    unknown = set(options) - SETTING_KEYS
    if unknown:
        raise ImproperlyConfigured(
            UNKNOWN_SETTING.format(setting=SETTING, keys=sorted(unknown), known=sorted(SETTING_KEYS))
        )
    root = Path(root or options.get("root") or settings.BASE_DIR).resolve()
    if not root.is_dir():
        raise ImproperlyConfigured(NOT_A_DIRECTORY.format(root=root, setting=SETTING))
    index = model_index()
    own_label = _own_app_label()
    protected_patterns = options.get("protected")
    if protected_patterns is None:
        protected = frozenset(
            model._meta.label
            for model in apps.get_models(include_auto_created=True)
            if model._meta.app_label != own_label
            and _is_project_app(model._meta.app_config.path, Path(settings.BASE_DIR))
        )
    else:
        patterns = _strings(options, "protected")
        protected_set: set[str] = set()
        for pattern in patterns:
            matched = {label for label in index.labels.values() if fnmatch.fnmatch(label, pattern)}
            if not matched:
                raise ImproperlyConfigured(UNKNOWN_PROTECTED.format(setting=SETTING, pattern=pattern))
            protected_set |= matched
        protected = frozenset(protected_set)
    allowed = list(_strings(options, "allowed"))
    lifts_allowed = list(_strings(options, "lifts_allowed"))
    own_package = Path(apps.get_app_config(own_label).path) if own_label else None
    if own_package and _is_project_app(str(own_package), root):
        prefix = own_package.resolve().relative_to(root).as_posix()
        allowed[:0] = [f"{prefix}/{place}" for place in OWN_WRITES]
        lifts_allowed[:0] = [f"{prefix}/{place}" for place in OWN_LIFTS]
    return AuditConfig(
        root=root,
        index=index,
        protected=protected,
        allowed=tuple(allowed),
        startup_allowed=_strings(options, "startup_allowed"),
        exclude=_strings(options, "exclude"),
        lifts_allowed=tuple(lifts_allowed),
    )


def place_matches(finding: Finding, patterns: Iterable[str]) -> bool:
    """ "path/glob.py" matches a file; "path/glob.py::Qual.name*" matches functions in it."""
    local = finding.function.removeprefix(f"{finding.module}.") if finding.module else finding.function
    for pattern in patterns:
        file_pattern, _, function_pattern = pattern.partition("::")
        if fnmatch.fnmatch(finding.file, file_pattern) and (
            not function_pattern or fnmatch.fnmatch(local, function_pattern)
        ):
            return True
    return False


def _is_migration(finding: Finding) -> bool:
    return "/migrations/" in f"/{finding.file}"


def _startup_reach(scan: ScanResult) -> dict[str, tuple[str, list[str]]]:
    """Each function reachable from a start-up root: (the root, the call chain from it)."""
    reached: dict[str, tuple[str, list[str]]] = {}
    queue: deque[str] = deque()
    for root in sorted(scan.startup_roots):
        if root not in reached:
            reached[root] = (root, [root])
            queue.append(root)
    while queue:
        current = queue.popleft()
        root, chain = reached[current]
        info = scan.functions.get(current)
        if info is None:
            continue
        for callee in sorted(info.calls):
            if callee not in reached and callee in scan.functions:
                reached[callee] = (root, [*chain, callee])
                queue.append(callee)
    return reached


def _function_writes(scan: ScanResult, writes: list[Finding]) -> dict[str, set[str]]:
    """Functions that write, directly or through calls: key -> models ("?" when not known)."""
    total: dict[str, set[str]] = {}
    # A call whose arguments told which model the callee writes: the callee's "?" is resolved.
    resolved: set[tuple[str, str]] = set()
    for finding in writes:
        if finding.kind != FIXTURE_ROWS:
            total.setdefault(finding.function, set()).add(finding.model or UNKNOWN_MODEL)
            if finding.detail.startswith(THROUGH):
                resolved.add((finding.function, finding.detail.removeprefix(THROUGH)))
    changed = True
    while changed:
        changed = False
        for key, info in scan.functions.items():
            for callee in info.calls:
                if callee in total and callee != key:
                    models = total[callee]
                    if (key, callee) in resolved:
                        models = models - {UNKNOWN_MODEL}
                    before = len(total.setdefault(key, set()))
                    total[key] |= models
                    changed = changed or len(total[key]) != before
    return {key: models for key, models in total.items() if models}


def evaluate(scan: ScanResult, config: AuditConfig) -> tuple[list[Violation], dict[str, set[str]]]:
    violations: list[Violation] = []
    reach = _startup_reach(scan)
    writes = [f for f in scan.findings if f.category == WRITE]
    violations += _lifts(scan, config)
    for finding in writes:
        model = finding.model
        protected = model is not None and model in config.protected
        if finding.kind == FIXTURE_ROWS:
            if protected:
                violations.append(Violation(finding, FIXTURE_SHIPS_PROTECTED.format(model=model)))
            continue
        if finding.kind in (PRIVATE_API, RUNTIME_MANAGER) and not (
            model is not None and not protected
        ):  # whatever it writes: the model is seldom known statically
            if not place_matches(finding, config.allowed):
                how = finding.detail if finding.kind == PRIVATE_API else f"a {finding.kind}: {finding.detail}"
                violations.append(Violation(finding, PRIVATE_ROUTE.format(how=how)))
        elif protected and not place_matches(finding, config.allowed):
            if not (finding.kind == RAW_SQL_SCHEMA and _is_migration(finding)):
                violations.append(Violation(finding, OUTSIDE_ALLOWED.format(model=model)))
        if finding.function in reach and not place_matches(finding, config.startup_allowed):
            violations.append(Violation(finding, STARTUP_WRITE.format(how=_how(scan, reach, finding))))
    violations.sort(key=lambda v: (*v.finding.sort_key(), v.reason))
    return violations, _function_writes(scan, writes)


def _lifts(scan: ScanResult, config: AuditConfig) -> list[Violation]:
    """A seal opened outside its writer modules; deploy mode lifted outside the named places."""
    violations = []
    for finding in scan.findings:
        if finding.category != LIFT:
            continue
        if finding.kind == SEAL_OPENED:
            writers = config.index.openers.get(finding.detail, frozenset())
            if finding.module not in writers:
                reason = SEAL_OUTSIDE_WRITERS.format(
                    detail=finding.detail, writers=" or ".join(sorted(writers))
                )
                violations.append(Violation(finding, reason))
        elif not place_matches(finding, config.lifts_allowed):
            violations.append(Violation(finding, LIFT_OUTSIDE.format(detail=finding.detail)))
    return violations


def _how(scan: ScanResult, reach: dict[str, tuple[str, list[str]]], finding: Finding) -> str:
    root, chain = reach[finding.function]
    origin = scan.startup_roots[root]
    if origin.kind == MODULE_IMPORT:
        return RUNS_ON_IMPORT.format(module=origin.module)
    via = f" via {' → '.join(chain[1:])}" if len(chain) > 1 else ""
    root_kind = origin.kind if not origin.detail else f"{origin.detail} {origin.kind}"
    return REACHED_FROM.format(
        root_kind=root_kind, root=root, root_file=origin.file, root_line=origin.line, via=via
    )


def audit(config: AuditConfig) -> AuditReport:
    """Scan the configured tree and apply the policy. No code under the root is run."""
    started = time.perf_counter()
    scan = scan_tree(config.root, config.index, config.exclude)
    violations, function_writes = evaluate(scan, config)
    return AuditReport(
        config=config,
        findings=sorted(scan.findings, key=Finding.sort_key),
        violations=violations,
        files_scanned=scan.files_scanned,
        seconds=time.perf_counter() - started,
        errors=scan.errors,
        function_writes=function_writes,
    )
