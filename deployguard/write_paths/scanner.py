"""The static scan: every place in a source tree that can write data, found with `ast`, nothing run.

The scanner knows nothing of any app. It is given a `ModelIndex` (which dotted class
paths are models, which tables they own) and reports `Finding`s; the policy in
`deployguard.write_paths.policy` decides which of them are violations.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from deployguard.sql_writes import UNKNOWN_PART, UNKNOWN_TABLE, is_schema_change, write_targets

# Categories of finding.
WRITE = "write"
ENTRY = "entry point"
LIFT = "guard lift"

# Kinds of write.
INSTANTIATE_SAVE = "instantiation + save"
INSTANCE_SAVE = "instance save"
CREATE = "objects.create"
GET_OR_CREATE = "get_or_create"
UPDATE_OR_CREATE = "update_or_create"
BULK_CREATE = "bulk_create"
BULK_UPDATE = "bulk_update"
QUERYSET_UPDATE = "queryset update"
QUERYSET_DELETE = "queryset delete"
INSTANCE_DELETE = "instance delete"
RAW_SQL_WRITE = "raw SQL write"
RAW_SQL_SCHEMA = "raw SQL schema change"
FIXTURE_ROWS = "fixture rows"
PRIVATE_API = "private ORM write API"
RUNTIME_MANAGER = "manager or queryset made at run time"

# Kinds of guard lift: code that opens a way around the guards.
SEAL_OPENED = "seal opened"
DEPLOY_MODE_LIFTED = "deploy-mode guard lifted"

# Django's private methods that write, each a way around a model's save(), delete() and managers.
PRIVATE_WRITE_METHODS = frozenset(
    {"_save_table", "_save_parents", "_do_insert", "_do_update", "_insert", "_batched_insert", "_update",
     "_raw_delete"}
)  # fmt: skip
# deployguard's own ways through deploy mode: only its own pipeline, in named places, may use them.
DEPLOY_MODE_LIFTS = {
    "deployguard.allow_writes": "allow_writes()",
    "deployguard.allowances.allow_writes": "allow_writes()",
    "deployguard.allowances.allow_schema_changes": "allow_schema_changes()",
    "deployguard.allowances.allow_schema_changes_for_process": "allow_schema_changes_for_process()",
    "deployguard.allowances.switch_ddl": "switch_ddl()",
    "deployguard.state.disable": "state.disable()",
    "deployguard.state.switch_off": "state.switch_off()",
}

# Kinds of entry point: code that runs without a person asking for it.
SIGNAL_RECEIVER = "signal receiver"
APP_READY = "AppConfig.ready"
MANAGEMENT_COMMAND = "management command"
RUN_PYTHON = "migration RunPython"
RUN_SQL = "migration RunSQL"
THREAD_LAUNCH = "thread launch"
PROCESS_LAUNCH = "process launch"
EXECUTOR = "executor"
TASK_ENQUEUE = "task enqueue"
TASK_DEFINITION = "task definition"

# Signals that fire while the site starts or migrates: their receivers are start-up code.
STARTUP_SIGNALS = frozenset({"pre_migrate", "post_migrate", "class_prepared", "connection_created"})
KNOWN_SIGNALS = STARTUP_SIGNALS | {
    "pre_init",
    "post_init",
    "pre_save",
    "post_save",
    "pre_delete",
    "post_delete",
    "m2m_changed",
    "request_started",
    "request_finished",
    "got_request_exception",
    "setting_changed",
    "template_rendered",
    "user_logged_in",
    "user_logged_out",
    "user_login_failed",
    "pre_create_historical_record",
    "post_create_historical_record",
}

MANAGER_ATTRS = frozenset({"objects", "_default_manager", "_base_manager"})
QUERYSET_METHODS = frozenset(
    {
        "all",
        "filter",
        "exclude",
        "select_for_update",
        "select_related",
        "prefetch_related",
        "order_by",
        "using",
        "annotate",
        "alias",
        "only",
        "defer",
        "distinct",
        "none",
        "reverse",
        "extra",
        "get_queryset",
    }
)
INSTANCE_METHODS = frozenset({"get", "first", "last", "earliest", "latest", "create"})
TUPLE_INSTANCE_METHODS = frozenset({"get_or_create", "update_or_create"})

THREAD_CALLS = {"threading.Thread": THREAD_LAUNCH, "threading.Timer": THREAD_LAUNCH}
PROCESS_CALLS = {
    "multiprocessing.Process": PROCESS_LAUNCH,
    "multiprocessing.Pool": PROCESS_LAUNCH,
    "multiprocessing.pool.Pool": PROCESS_LAUNCH,
    "multiprocessing.pool.ThreadPool": THREAD_LAUNCH,
    "subprocess.Popen": PROCESS_LAUNCH,
    "subprocess.run": PROCESS_LAUNCH,
    "subprocess.call": PROCESS_LAUNCH,
    "subprocess.check_call": PROCESS_LAUNCH,
    "subprocess.check_output": PROCESS_LAUNCH,
    "os.fork": PROCESS_LAUNCH,
    "concurrent.futures.ThreadPoolExecutor": EXECUTOR,
    "concurrent.futures.ProcessPoolExecutor": EXECUTOR,
    "concurrent.futures.thread.ThreadPoolExecutor": EXECUTOR,
    "concurrent.futures.process.ProcessPoolExecutor": EXECUTOR,
    "asyncio.create_task": TASK_ENQUEUE,
    "asyncio.ensure_future": TASK_ENQUEUE,
}
LAUNCHES = {**THREAD_CALLS, **PROCESS_CALLS}
TASK_ENQUEUE_METHODS = frozenset({"delay", "apply_async", "enqueue", "send_task"})
TASK_DECORATORS = frozenset({"task", "shared_task", "periodic_task", "db_periodic_task", "actor"})
# Calls whose function argument runs later, in this process: the caller reaches it.
CALLBACK_TAKERS = frozenset({"on_commit", "submit", "map", "run_in_executor", "call_soon", "apply_async"})

# Nodes that hold no call: the walk does not descend into them.
_LEAVES = frozenset(
    {ast.Name, ast.Constant, ast.Load, ast.Store, ast.Del, ast.Pass, ast.Break, ast.Continue}
    | {
        cls
        for cls in vars(ast).values()
        if isinstance(cls, type) and issubclass(cls, ast.operator | ast.unaryop | ast.cmpop | ast.boolop)
    }
)
THROUGH = "through "
MODULE_LEVEL = "<module>"
MODULE_IMPORT = "module import"

# Directory names never scanned: other people's code, tests, build output.
DEFAULT_EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "node_modules",
        "__pycache__",
        "site-packages",
        "dist-packages",
        "build",
        "dist",
        "tests",
        "test",
    }
)
DEFAULT_EXCLUDED_FILES = ("conftest.py", "test_*.py", "*_test.py", "tests.py")
FIXTURE_SUFFIXES = (".json", ".yaml", ".yml", ".xml")


# What the scanner infers an expression to be: (what, model label or text).
_Type = tuple[str, str | None]


@dataclass(frozen=True)
class ModelIndex:
    """What the scanner knows of the models: dotted class paths and tables, both to labels."""

    classes: Mapping[str, str]
    tables: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)
    """Lower-cased "app_label.modelname" to the label as written ("documents.PublishedDraft")."""
    user_model: str | None = None
    openers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Dotted paths that open a seal (deployguard.seal: `documents.models.service_write`) to the
    modules allowed to call them."""

    def label(self, app_label: str, model_name: str) -> str:
        given = f"{app_label}.{model_name}"
        return self.labels.get(given.lower(), given)

    def table_of(self, label: str) -> str | None:
        for table, owner in self.tables.items():
            if owner == label:
                return table
        return None


@dataclass(frozen=True)
class Finding:
    """One place that writes (category "write") or runs unasked (category "entry point")."""

    file: str
    line: int
    function: str
    kind: str
    model: str | None = None
    detail: str = ""
    category: str = WRITE
    module: str = field(default="", compare=False)

    def sort_key(self) -> tuple[str, int, str, str, str, str]:
        return (self.file, self.line, self.function, self.kind, self.model or "", self.detail)


@dataclass
class FunctionInfo:
    key: str
    file: str
    line: int
    params: list[str] = field(default_factory=list)
    calls: set[str] = field(default_factory=set)
    # Parameters the function saves or deletes directly: name -> kind.
    param_writes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TypedCall:
    """A call passing model instances to a project function, for one level of propagation."""

    file: str
    line: int
    caller: str
    callee: str
    module: str
    positional: tuple[_Type | None, ...]
    keywords: tuple[tuple[str, _Type], ...]


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    functions: dict[str, FunctionInfo] = field(default_factory=dict)
    startup_roots: dict[str, Finding] = field(default_factory=dict)
    typed_calls: list[TypedCall] = field(default_factory=list)
    files_scanned: int = 0
    errors: list[str] = field(default_factory=list)


def classify_sql(sql: str) -> tuple[str | None, str | None]:
    """("DML" or "DDL" or None, the first table written or None) for SQL found in the source:
    deployguard.sql_writes' answer, the one the write guard gives the same text when it runs."""
    writes = write_targets(sql)
    if not writes:
        return None, None
    verb, table = writes[0]
    kind = "DDL" if is_schema_change(verb) else "DML"
    return kind, None if table == UNKNOWN_TABLE or UNKNOWN_PART in table else table


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def iter_source_files(root: Path, exclude: Iterable[str] = ()) -> Iterator[tuple[Path, str]]:
    """(path, posix path relative to root) of every .py and fixture file the audit covers."""
    patterns = tuple(exclude)
    for directory, dirnames, filenames in os.walk(root):
        rel_dir = Path(directory).relative_to(root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in DEFAULT_EXCLUDED_DIRS
            and not d.startswith(".")
            and not _excluded((rel_dir / d).as_posix(), patterns)
        )
        for name in sorted(filenames):
            rel = (rel_dir / name).as_posix()
            if name.endswith(".py"):
                if any(fnmatch.fnmatch(name, p) for p in DEFAULT_EXCLUDED_FILES):
                    continue
            elif not (name.endswith(FIXTURE_SUFFIXES) and rel_dir.name == "fixtures"):
                continue
            if not _excluded(rel, patterns):
                yield Path(directory) / name, rel


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(rel + "/", p) for p in patterns)


def scan_tree(root: Path, index: ModelIndex, exclude: Iterable[str] = ()) -> ScanResult:
    """Scan every source file under `root` (see `iter_source_files`) and return what it finds."""
    result = ScanResult()
    for path, rel in iter_source_files(root, exclude):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            result.errors.append(f"{rel}: cannot read ({error})")
            continue
        result.files_scanned += 1
        if rel.endswith(".py"):
            scan_module(source, rel, index, result)
        else:
            scan_fixture(source, rel, index, result)
    propagate_parameter_writes(result)
    return result


def propagate_parameter_writes(result: ScanResult) -> None:
    """`_save(draft)` where `_save` saves its parameter: a write of draft's model at the call.

    One level deep: a helper that passes its parameter on to another helper is not followed.
    """
    for call in result.typed_calls:
        callee = result.functions.get(call.callee)
        if callee is None or not callee.param_writes:
            continue
        params = callee.params[1:] if callee.params[:1] in (["self"], ["cls"]) else callee.params
        arguments = dict(zip(params, call.positional, strict=False)) | dict(call.keywords)
        for param, kind in callee.param_writes.items():
            found = arguments.get(param)
            if found is None:
                continue
            what, label = found
            derived = INSTANTIATE_SAVE if kind == INSTANCE_SAVE and what == "new" else kind
            result.findings.append(
                Finding(
                    call.file,
                    call.line,
                    call.caller,
                    derived,
                    label,
                    f"{THROUGH}{call.callee}",
                    WRITE,
                    call.module,
                )
            )


def scan_module(source: str, rel: str, index: ModelIndex, result: ScanResult) -> None:
    try:
        tree = ast.parse(source, filename=rel)
    except SyntaxError as error:
        result.errors.append(f"{rel}:{error.lineno}: cannot parse ({error.msg})")
        return
    _ModuleScanner(tree, rel, module_name(Path(rel)), index, result).run()


_FIXTURE_MODEL = {
    ".json": re.compile(r'"model"\s*:\s*"([\w.]+)"'),
    ".xml": re.compile(r'<object\b[^>]*\bmodel="([\w.]+)"'),
    ".yaml": re.compile(r"^\s*-?\s*model\s*:\s*['\"]?([\w.]+)", re.M),
}


def scan_fixture(source: str, rel: str, index: ModelIndex, result: ScanResult) -> None:
    """A shipped fixture is rows that `loaddata` writes: one finding per model it holds."""
    suffix = Path(rel).suffix
    pattern = _FIXTURE_MODEL[".yaml" if suffix == ".yml" else suffix]
    if suffix == ".json":
        try:
            json.loads(source)
        except ValueError as error:
            result.errors.append(f"{rel}: not valid JSON ({error})")
            return
    counts: dict[str, tuple[int, int]] = {}
    for match in pattern.finditer(source):
        app_label, _, model_name = match.group(1).rpartition(".")
        label = index.label(app_label, model_name)
        line = source.count("\n", 0, match.start()) + 1
        first, count = counts.get(label, (line, 0))
        counts[label] = (first, count + 1)
    for label, (line, count) in counts.items():
        result.findings.append(
            Finding(rel, line, "loaddata", FIXTURE_ROWS, label, f"{count} row(s)", WRITE, "")
        )


class _Scope:
    def __init__(self, key: str, class_name: str | None, info: FunctionInfo | None) -> None:
        self.key = key
        self.class_name = class_name
        self.info = info
        self.types: dict[str, _Type] = {}


class _ModuleScanner(ast.NodeVisitor):
    def __init__(self, tree: ast.Module, rel: str, module: str, index: ModelIndex, result: ScanResult):
        self.tree = tree
        self.rel = rel
        self.module = module
        self.index = index
        self.result = result
        self.is_migration = "/migrations/" in f"/{rel}" and not rel.endswith("__init__.py")
        self.is_command = "/management/commands/" in f"/{rel}"
        self.package = module if rel.endswith("__init__.py") else module.rpartition(".")[0]
        self.aliases: dict[str, str] = {}
        self.defined: set[str] = set()
        self.signal_names: set[str] = set()
        self.scopes: list[_Scope] = []
        self.class_stack: list[str] = []

    # -- set-up ---------------------------------------------------------------

    def run(self) -> None:
        self._collect_names()
        key = f"{self.module}.{MODULE_LEVEL}"
        self.scopes.append(_Scope(key, None, self._function(key, 1, [])))
        self.result.startup_roots.setdefault(
            key, Finding(self.rel, 1, key, MODULE_IMPORT, category=ENTRY, module=self.module)
        )
        self.visit(self.tree)

    def _collect_names(self) -> None:
        # Module-level imports (also under `if`/`try`) are known before any function body is
        # read; imports inside functions are recorded as the walk reaches them.
        pending = list(self.tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.Import | ast.ImportFrom):
                self._import(node)
            elif isinstance(node, ast.If | ast.Try):
                pending.extend([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
                for handler in getattr(node, "handlers", []):
                    pending.extend(handler.body)
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                self.defined.add(node.name)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                if self._dotted(node.value.func, local=False).rpartition(".")[2] == "Signal":
                    self.signal_names.update(t.id for t in node.targets if isinstance(t, ast.Name))

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    self.aliases[head] = head
            return
        base = self._absolute(node.module, node.level)
        for alias in node.names:
            if alias.name != "*":
                self.aliases[alias.asname or alias.name] = f"{base}.{alias.name}" if base else alias.name

    visit_Import = _import
    visit_ImportFrom = _import

    # -- the walk: ast.NodeVisitor's, without its per-node method lookup and leaf visits --------

    _dispatch: ClassVar[dict[type, Callable[[Any, Any], None] | None]] = {}

    def visit(self, node: ast.AST) -> None:
        kind = type(node)
        try:
            method = self._dispatch[kind]
        except KeyError:
            if kind in _LEAVES:
                method = None
            else:
                method = getattr(type(self), f"visit_{kind.__name__}", type(self).generic_visit)
            self._dispatch[kind] = method
        if method is not None:
            method(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        visit = self.visit
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        visit(item)
            elif isinstance(value, ast.AST):
                visit(value)

    def _absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        parts = self.package.split(".") if self.package else []
        base = parts[: len(parts) - (level - 1)] if level > 1 else parts
        return ".".join([*base, module] if module else base)

    def _function(self, key: str, line: int, params: list[str]) -> FunctionInfo:
        info = self.result.functions.get(key)
        if info is None:
            info = FunctionInfo(key, self.rel, line, params)
            self.result.functions[key] = info
        return info

    # -- names and types ------------------------------------------------------

    def _dotted(self, node: ast.expr, *, local: bool = True) -> str:
        """The dotted path an expression names, imports and aliases resolved; "" if not a name."""
        if isinstance(node, ast.Name):
            if local and any(node.id in scope.types for scope in self.scopes[1:]):
                return ""
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in self.defined:
                return f"{self.module}.{node.id}"
            return node.id
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value, local=local)
            return f"{base}.{node.attr}" if base else ""
        return ""

    def _lookup(self, name: str) -> _Type | None:
        for scope in reversed(self.scopes):
            if name in scope.types:
                return scope.types[name]
        return None

    def _type(self, node: ast.expr) -> _Type | None:
        if isinstance(node, ast.Name):
            found = self._lookup(node.id)
            if found is not None:
                return found
        if isinstance(node, ast.Name | ast.Attribute):
            dotted = self._dotted(node)
            if dotted in self.index.classes:
                return ("class", self.index.classes[dotted])
            if isinstance(node, ast.Attribute) and node.attr in MANAGER_ATTRS:
                base = self._type(node.value)
                if base and base[0] == "class":
                    return ("manager", base[1])
            return None
        if isinstance(node, ast.Call):
            return self._call_type(node)
        if isinstance(node, ast.Subscript):
            base = self._type(node.value)
            if base and base[0] in {"queryset", "manager"}:
                return ("queryset" if isinstance(node.slice, ast.Slice) else "instance", base[1])
        return None

    def _call_type(self, node: ast.Call) -> _Type | None:
        func = node.func
        dotted = self._dotted(func)
        if dotted in self.index.classes:
            return ("new", self.index.classes[dotted])
        name = dotted.rpartition(".")[2] if dotted else getattr(func, "attr", "")
        if name == "get_model":
            label = self._get_model_label(node)
            return ("class", label) if label else None
        if name == "get_user_model" and self.index.user_model:
            return ("class", self.index.user_model)
        if isinstance(func, ast.Attribute):
            base = self._type(func.value)
            if base and base[0] in {"manager", "queryset"}:
                if func.attr in QUERYSET_METHODS:
                    return ("queryset", base[1])
                if func.attr in INSTANCE_METHODS:
                    return ("instance", base[1])
                if func.attr in TUPLE_INSTANCE_METHODS:
                    return ("pair", base[1])
        return None

    def _annotation(self, node: ast.expr | None) -> _Type | None:
        """`submission: Submission` is an instance; `QuerySet[Submission]` a queryset."""
        if node is None:
            return None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                node = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(node, ast.Subscript) and self._dotted(node.value).endswith("QuerySet"):
            inner = self._annotation(node.slice)
            return ("queryset", inner[1]) if inner else None
        if isinstance(node, ast.Name | ast.Attribute):
            dotted = self._dotted(node, local=False)
            if dotted in self.index.classes:
                return ("instance", self.index.classes[dotted])
        return None

    def _get_model_label(self, node: ast.Call) -> str | None:
        strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if len(strings) >= 2:
            return self.index.label(strings[0], strings[1])
        if len(strings) == 1 and "." in strings[0]:
            app_label, _, model_name = strings[0].partition(".")
            return self.index.label(app_label, model_name)
        return None

    def _string(self, node: ast.expr | None) -> str | None:
        """The text of a string expression, unknown parts as UNKNOWN_PART; None if not text."""
        if node is None:
            return None
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append(str(value.value))
                else:
                    parts.append(self._formatted(value))
            return "".join(parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left = self._string(node.left)
            if left is None:
                return None
            right = self._string(node.right)
            return left + (right if right is not None else UNKNOWN_PART)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return self._string(node.left)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            return self._string(node.func.value)
        if isinstance(node, ast.Name):
            found = self._lookup(node.id)
            if found and found[0] == "text":
                return found[1]
        return None

    def _formatted(self, value: ast.FormattedValue | ast.expr) -> str:
        """`{Model._meta.db_table}` inside an f-string becomes the model's table."""
        expr = value.value if isinstance(value, ast.FormattedValue) else value
        if (
            isinstance(expr, ast.Attribute)
            and expr.attr == "db_table"
            and isinstance(expr.value, ast.Attribute)
            and expr.value.attr == "_meta"
        ):
            owner = self._type(expr.value.value)
            if owner and owner[0] == "class" and owner[1]:
                table = self.index.table_of(owner[1])
                if table:
                    return table
        return UNKNOWN_PART

    # -- recording ------------------------------------------------------------

    @property
    def scope(self) -> _Scope:
        return self.scopes[-1]

    def _add(
        self,
        node: ast.AST,
        kind: str,
        model: str | None,
        detail: str = "",
        category: str = WRITE,
        function: str | None = None,
    ) -> Finding:
        finding = Finding(
            self.rel,
            getattr(node, "lineno", 1),
            function or self.scope.key,
            kind,
            model,
            detail,
            category,
            self.module,
        )
        self.result.findings.append(finding)
        return finding

    def _edge(self, target: ast.expr) -> str | None:
        """Record that the current function calls (or schedules) `target`; return its key."""
        key = self._callee_key(target)
        if key:
            self.scope.info.calls.add(key)  # type: ignore[union-attr]
        return key

    def _callee_key(self, target: ast.expr) -> str | None:
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            if target.value.id in {"self", "cls"} and self.scope.class_name:
                return f"{self.module}.{self.scope.class_name}.{target.attr}"
        if isinstance(target, ast.Name):
            # A nested function defined in an enclosing scope.
            for scope in reversed(self.scopes):
                nested = f"{scope.key}.{target.id}"
                if nested in self.result.functions:
                    return nested
        dotted = self._dotted(target)
        return dotted or None

    # -- visitors -------------------------------------------------------------

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in node.bases:
            self.visit(base)
        qualified = ".".join([*self.class_stack, node.name])
        bases = {self._dotted(base, local=False).rpartition(".")[2] for base in node.bases}
        methods = {
            item.name: item for item in node.body if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if "ready" in methods and any(base.endswith("AppConfig") for base in bases):
            key = f"{self.module}.{qualified}.ready"
            finding = Finding(
                self.rel, methods["ready"].lineno, key, APP_READY, category=ENTRY, module=self.module
            )
            self.result.findings.append(finding)
            self.result.startup_roots[key] = finding
        if self.is_command and node.name == "Command" and "handle" in methods:
            key = f"{self.module}.{qualified}.handle"
            self.result.findings.append(
                Finding(
                    self.rel, methods["handle"].lineno, key, MANAGEMENT_COMMAND,
                    detail=f"manage.py {Path(self.rel).stem}", category=ENTRY, module=self.module,
                )
            )  # fmt: skip
        self.class_stack.append(node.name)
        for item in node.body:
            self.visit(item)
        self.class_stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        parent = self.scope
        owner = ".".join(self.class_stack)
        at_module_level = len(self.scopes) == 1
        if at_module_level:
            key = ".".join([self.module, *self.class_stack, node.name])
        else:
            key = f"{parent.key}.{node.name}"
        self._decorators(node, key)
        params = [a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]]
        info = self._function(key, node.lineno, params)
        if not at_module_level:
            # A nested function is assumed to run when its parent does.
            parent.info.calls.add(key)  # type: ignore[union-attr]
        scope = _Scope(key, owner if self.class_stack else parent.class_name, info)
        self.scopes.append(scope)
        for argument in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            annotated = self._annotation(argument.annotation)
            if annotated:
                scope.types[argument.arg] = annotated
        saved_stack, self.class_stack = self.class_stack, []
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        for statement in node.body:
            self.visit(statement)
        self.class_stack = saved_stack
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        key = f"{self.scope.key}.<lambda>"
        info = self._function(key, node.lineno, [a.arg for a in node.args.args])
        self.scope.info.calls.add(key)  # type: ignore[union-attr]
        scope = _Scope(key, self.scope.class_name, info)
        self.scopes.append(scope)
        self.visit(node.body)
        self.scopes.pop()

    def _decorators(self, node: ast.FunctionDef | ast.AsyncFunctionDef, key: str) -> None:
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            name = self._dotted(call.func if call else decorator, local=False).rpartition(".")[2]
            if name == "receiver" and call and call.args:
                first = call.args[0]
                signals = first.elts if isinstance(first, ast.List | ast.Tuple) else [first]
                for signal in signals:
                    self._receiver(node, key, self._dotted(signal, local=False).rpartition(".")[2] or "?")
            elif name in TASK_DECORATORS:
                self.result.findings.append(
                    Finding(self.rel, node.lineno, key, TASK_DEFINITION, None, f"@{name}", ENTRY, self.module)
                )

    def _receiver(self, node: ast.AST, key: str, signal: str) -> None:
        finding = Finding(
            self.rel,
            node.lineno,
            key,
            SIGNAL_RECEIVER,
            None,
            signal,
            ENTRY,
            self.module,  # type: ignore[attr-defined]
        )
        self.result.findings.append(finding)
        if signal in STARTUP_SIGNALS:
            self.result.startup_roots.setdefault(key, finding)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        self._bind(node.targets, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self._bind([node.target], node.value)

    def _bind(self, targets: list[ast.expr], value: ast.expr) -> None:
        bound = self._type(value)
        text = self._string(value) if bound is None else None
        if text is not None:
            bound = ("text", text)
        for target in targets:
            if isinstance(target, ast.Name):
                self._set(target.id, bound)
            elif isinstance(target, ast.Tuple | ast.List):
                first = bound if bound and bound[0] == "pair" else None
                for position, element in enumerate(target.elts):
                    if isinstance(element, ast.Name):
                        self._set(element.id, ("instance", first[1]) if first and position == 0 else None)

    def _set(self, name: str, bound: _Type | None) -> None:
        if bound is None:
            self.scope.types.pop(name, None)
            if len(self.scopes) > 1:
                # A local that shadows a module name but whose type is unknown.
                self.scope.types[name] = ("unknown", None)
        else:
            self.scope.types[name] = bound

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        iterated = self._type(node.iter)
        if isinstance(node.target, ast.Name):
            if iterated and iterated[0] in {"queryset", "manager"}:
                self._set(node.target.id, ("instance", iterated[1]))
            else:
                self._set(node.target.id, None)
        for statement in [*node.body, *node.orelse]:
            self.visit(statement)

    visit_AsyncFor = visit_For

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        dotted = self._dotted(func)
        self._edge(func)
        if isinstance(func, ast.Attribute):
            self._method_call(node, func)
        self._launch(node, dotted)
        self._lift(node, dotted)
        self._runtime_manager(node, dotted)
        self._typed_call(node, dotted)
        self.generic_visit(node)

    def _lift(self, node: ast.Call, dotted: str) -> None:
        """A call that opens a way around the guards: a seal's opener, deploy mode's allowances."""
        if dotted in self.index.openers:
            self._add(node, SEAL_OPENED, None, dotted, LIFT)
        elif dotted in DEPLOY_MODE_LIFTS:
            self._add(node, DEPLOY_MODE_LIFTED, None, DEPLOY_MODE_LIFTS[dotted], LIFT)

    def _runtime_manager(self, node: ast.Call, dotted: str) -> None:
        """`QuerySet(model=M)`, `Manager()`, `X.as_manager()` inside a function: a manager that is
        none of the model's own, so none of their guards."""
        if len(self.scopes) < 2 or not dotted:
            return  # module level and class bodies: declaring a model's managers is how it is done
        last = dotted.rpartition(".")[2]
        made = last.endswith(("Manager", "QuerySet")) and (
            dotted.startswith("django.db.models") or any(k.arg == "model" for k in node.keywords)
        )
        if not (made or last in {"as_manager", "from_queryset"}):
            return
        model = next((k.value for k in node.keywords if k.arg == "model"), None)
        typed = self._type(model) if model is not None else None
        self._add(node, RUNTIME_MANAGER, typed[1] if typed else None, f"{dotted}()")

    def _typed_call(self, node: ast.Call, dotted: str) -> None:
        key = self._callee_key(node.func)
        if not key:
            return
        positional = tuple(self._instance(a) for a in node.args)
        keywords = tuple(
            (k.arg, found) for k in node.keywords if k.arg and (found := self._instance(k.value))
        )
        if any(positional) or keywords:
            self.result.typed_calls.append(
                TypedCall(self.rel, node.lineno, self.scope.key, key, self.module, positional, keywords)
            )

    def _instance(self, node: ast.expr) -> _Type | None:
        found = self._type(node)
        return found if found and found[0] in {"instance", "new"} and found[1] else None

    def _method_call(self, node: ast.Call, func: ast.Attribute) -> None:
        method, receiver = func.attr, func.value
        if isinstance(receiver, ast.Call) and self._dotted(receiver.func) == "super":
            # The override delegating to Django is the mechanism, not a new write path.
            return
        typed = self._type(receiver)
        what, label = typed if typed else (None, None)
        through_manager = self._through_manager(receiver)
        param = self._param_name(receiver)
        if method == "save":
            if what == "new":
                self._add(node, INSTANTIATE_SAVE, label)
            elif what == "instance":
                self._add(node, INSTANCE_SAVE, label)
            elif not node.args:
                self._add(node, INSTANCE_SAVE, None)
                if param:
                    self.scope.info.param_writes.setdefault(param, INSTANCE_SAVE)  # type: ignore[union-attr]
        elif method == "create" or (method.startswith("create_") and what == "manager"):
            if what in {"manager", "queryset"} or through_manager:
                self._add(node, CREATE, label, "" if method == "create" else f".{method}()")
        elif method in {"get_or_create", "update_or_create", "bulk_create", "bulk_update"}:
            kinds = {
                "get_or_create": GET_OR_CREATE,
                "update_or_create": UPDATE_OR_CREATE,
                "bulk_create": BULK_CREATE,
                "bulk_update": BULK_UPDATE,
            }
            self._add(node, kinds[method], label if what in {"manager", "queryset"} else None)
        elif method == "update":
            if what in {"manager", "queryset"} or through_manager:
                self._add(node, QUERYSET_UPDATE, label)
        elif method == "delete":
            if what in {"manager", "queryset"} or through_manager:
                self._add(node, QUERYSET_DELETE, label)
            elif what in {"instance", "new"}:
                self._add(node, INSTANCE_DELETE, label)
            elif not node.args and not node.keywords:
                self._add(node, INSTANCE_DELETE, None)
                if param:
                    self.scope.info.param_writes.setdefault(param, INSTANCE_DELETE)  # type: ignore[union-attr]
        elif method in {"execute", "executemany", "executescript"} and node.args:
            self._raw_sql(node, node.args[0])
        elif method == "raw" and node.args and (what in {"manager", "queryset"} or through_manager):
            self._raw_sql(node, node.args[0])
        elif method in PRIVATE_WRITE_METHODS:
            self._add(node, PRIVATE_API, label if what else None, f".{method}()")
        elif method in TASK_ENQUEUE_METHODS:
            self._add(node, TASK_ENQUEUE, None, f".{method}()", ENTRY)
        elif method == "connect" and node.args:
            self._connect(node, receiver)

    def _param_name(self, receiver: ast.expr) -> str | None:
        info = self.scope.info
        if isinstance(receiver, ast.Name) and info and receiver.id in info.params:
            return receiver.id
        return None

    def _through_manager(self, receiver: ast.expr) -> bool:
        node = receiver
        while True:
            if isinstance(node, ast.Attribute):
                if node.attr in MANAGER_ATTRS:
                    return True
                node = node.value
            elif isinstance(node, ast.Call):
                node = node.func
            else:
                return False

    def _raw_sql(self, node: ast.Call, argument: ast.expr, function: str | None = None) -> None:
        statements: list[ast.expr] = []
        if isinstance(argument, ast.List | ast.Tuple):
            for element in argument.elts:
                statements.append(
                    element.elts[0] if isinstance(element, ast.Tuple) and element.elts else element
                )
        else:
            statements.append(argument)
        for statement in statements:
            text = self._string(statement)
            if text is None:
                continue
            verb, table = classify_sql(text)
            if verb is None:
                continue
            label = self.index.tables.get(table) if table else None
            detail = " ".join(text.replace(UNKNOWN_PART, "{?}").split())[:80]
            kind = RAW_SQL_WRITE if verb == "DML" else RAW_SQL_SCHEMA
            self._add(node, kind, label, detail, function=function)

    def _connect(self, node: ast.Call, signal: ast.expr) -> None:
        name = self._dotted(signal, local=False).rpartition(".")[2]
        keywords = {k.arg for k in node.keywords}
        if not (name in KNOWN_SIGNALS or name in self.signal_names or keywords & {"sender", "dispatch_uid"}):
            return
        target = node.args[0]
        key = self._callee_key(target) or "?"
        finding = Finding(self.rel, node.lineno, key, SIGNAL_RECEIVER, None, name or "?", ENTRY, self.module)
        self.result.findings.append(finding)
        if name in STARTUP_SIGNALS:
            self.result.startup_roots.setdefault(key, finding)

    def _launch(self, node: ast.Call, dotted: str) -> None:
        kind = LAUNCHES.get(dotted)
        last = dotted.rpartition(".")[2]
        if kind is None and (
            (last in {"Thread", "Timer"} and dotted.startswith("threading"))
            or (last in {"ThreadPoolExecutor", "ProcessPoolExecutor"} and "futures" in dotted)
        ):
            kind = THREAD_LAUNCH if last in {"Thread", "Timer"} else EXECUTOR
        if kind is not None:
            self._add(node, kind, None, dotted, ENTRY)
            for keyword in node.keywords:
                if keyword.arg in {"target", "function", "initializer"}:
                    self._edge(keyword.value)
        if last in CALLBACK_TAKERS and node.args and isinstance(node.args[0], ast.Name | ast.Attribute):
            self._edge(node.args[0])
        if self.is_migration and last in {"RunPython", "RunSQL"}:
            self._migration_operation(node, last)

    def _migration_operation(self, node: ast.Call, operation: str) -> None:
        arguments = {k.arg: k.value for k in node.keywords}
        first = node.args[0] if node.args else arguments.get("code" if operation == "RunPython" else "sql")
        # The operation runs when the migration is applied, not when its module is imported.
        migration = ".".join([self.module, *self.class_stack]) if self.class_stack else None
        if operation == "RunPython":
            code = self._callee_key(first) if first is not None else None
            self._add(node, RUN_PYTHON, None, f"runs {code or '?'}", ENTRY, migration)
        else:
            self._add(node, RUN_SQL, None, "", ENTRY, migration)
            if first is not None:
                self._raw_sql(node, first, migration)
