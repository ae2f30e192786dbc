"""Settings for every environment, read from the process environment through django-environ.

`DJANGO_ENV` (development, test or production) decides the defaults; every other
variable can override them. See the README's configuration table.
"""

from __future__ import annotations

import os
from email.utils import parseaddr
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

ENVIRONMENTS = ("development", "test", "production")

env = environ.Env()
DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in ENVIRONMENTS:
    raise ImproperlyConfigured(
        f"DJANGO_ENV={DJANGO_ENV!r} is not one of {', '.join(ENVIRONMENTS)}; set it to one of those."
    )
IS_PRODUCTION = DJANGO_ENV == "production"

# Secrets are read with os.environ, not env.str(): django-environ treats a value that
# starts with "$" as the name of another variable, and random secrets can start with "$".
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if IS_PRODUCTION:
    if not SECRET_KEY:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set in production (DJANGO_ENV=production): "
            "export a long random value, for example from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
elif not SECRET_KEY:
    # Development and test may run without one; a fresh key each start only logs users out.
    SECRET_KEY = get_random_secret_key()

DEBUG = env.bool("DEBUG", default=DJANGO_ENV == "development")
if IS_PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must not be on in production: unset DEBUG or set DEBUG=false.")

ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if IS_PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Comma-separated "Name <address>" entries (or bare addresses) for mail_admins alerts.
ADMINS = [parseaddr(entry) for entry in env.list("ADMINS", default=[])]
SERVER_EMAIL = env.str("SERVER_EMAIL", default="deploysafe@localhost")

EMAIL_CONFIG = env.email_url(
    "EMAIL_URL", default="smtp://localhost:25" if IS_PRODUCTION else "consolemail://"
)
vars().update(EMAIL_CONFIG)

INSTALLED_APPS = [
    "deployguard",
    "documents",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "simple_history",
    "django_tasks",
    "django_tasks_db",
]

MIDDLEWARE = [
    # First, so unsafe requests are refused in deploy mode before anything touches the database.
    "deployguard.middleware.DeployModeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "deployguard.origin.OriginMiddleware",
    "deployguard.monitoring.AuditLogMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    # Take the write lock when a transaction starts, so concurrent writers queue
    # instead of failing with "database is locked" half way through.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if DJANGO_ENV == "test":
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=VAR_DIR / "static")

# Security: on by default in production, so `check --deploy` is clean there.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=IS_PRODUCTION)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=IS_PRODUCTION) else None
)
SESSION_COOKIE_SECURE = IS_PRODUCTION
CSRF_COOKIE_SECURE = IS_PRODUCTION
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = IS_PRODUCTION
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=IS_PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A request refused in deploy mode is expected: deployguard.audit logs it once as a warning, and
    # this filter keeps Django's ERROR for the same 503 out of the logs and of ADMINS' mail
    # (Django's default LOGGING mails django.request's errors; check deployguard.E011).
    "filters": {"deploy_mode_refusals": {"()": "deployguard.logs.SkipDeployModeRefusals"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"filters": ["deploy_mode_refusals"]},
    },
}

# Documents: a second admin must publish what the first approved (off by default).
DOCUMENTS_REQUIRE_SEPARATE_PUBLISHER = env.bool("DOCUMENTS_REQUIRE_SEPARATE_PUBLISHER", default=False)
# The public pages' reads are prepared statements on PostgreSQL (documents/selectors.py); turn
# off behind a transaction-pooling PgBouncer older than 1.21, which cannot keep them.
DOCUMENTS_PREPARED_READS = env.bool("DOCUMENTS_PREPARED_READS", default=True)
# History records cannot be reverted through the admin: a revert would be a write
# path around the services.
SIMPLE_HISTORY_REVERT_DISABLED = True

# The write-path audit (`manage.py audit_write_paths`, run by `make lint`). Protected models
# default to every model of the project's own apps but deployguard's bookkeeping; only the
# places below (and deployguard's own package) may write them, and start-up code may write
# nothing. Entries are paths relative to BASE_DIR, globs allowed, optionally "path::function".
DEPLOYGUARD_WRITE_PATHS = {
    "allowed": ["documents/services.py"],
    # Benchmarks seed scratch databases by hand; they are not deployed code.
    "exclude": ["benchmarks/*"],
}

# Deploy mode (deployguard). DEPLOYMENT_MODE=true in a process's environment forces it on
# for that process; it is read by deployguard itself, at call time.
# Bearer token for POST /_deploy/mode; unset, that endpoint is disabled.
DEPLOYGUARD_TOKEN = os.environ.get("DEPLOYGUARD_TOKEN", "")  # os.environ: no "$" interpolation
# Seconds each process trusts the deploy-mode state it read; every process must agree.
DEPLOYGUARD_STATE_CACHE_SECONDS = env.float("DEPLOYGUARD_STATE_CACHE_SECONDS", default=1.0)
# Tables that stay writable in deploy mode besides deployguard's own: sessions, and the job queue
# (jobs are enqueued during a deploy and run after it; check deployguard.E010 keeps it listed).
DEPLOYGUARD_WRITABLE_TABLES = env.list(
    "DEPLOYGUARD_WRITABLE_TABLES", default=["django_session", "django_tasks_database_dbtaskresult"]
)
# The tables' owner, for migrate, deploy_safe, deploy_mode and db_roles (deployguard.roles):
# the site and its workers connect with DATABASE_URL as a role that may only read and write
# rows. Unset: one role does everything (see the README's production setup).
DEPLOYGUARD_OWNER_DATABASE = (
    env.db("DEPLOYGUARD_OWNER_DATABASE_URL") if os.environ.get("DEPLOYGUARD_OWNER_DATABASE_URL") else None
)
# Seconds the switch to on waits for transactions that wrote before it to end.
DEPLOYGUARD_DRAIN_TIMEOUT = env.float("DEPLOYGUARD_DRAIN_TIMEOUT", default=30.0)

# Integrity (deployguard): rule ids to silence; the largest share of a table that
# `scrub_fake_data --apply` quarantines without --force; the write monitor, and whether it
# quarantines a row that breaks an error-level rule (it always logs and mails ADMINS).
DEPLOYGUARD_SILENCED_RULES = env.list("DEPLOYGUARD_SILENCED_RULES", default=[])
DEPLOYGUARD_SCRUB_MAX_SHARE = env.float("DEPLOYGUARD_SCRUB_MAX_SHARE", default=0.2)
# Where backup_db, restore_db's safety backups and deploy_safe put backups by default.
DEPLOYGUARD_BACKUP_DIR = Path(env.str("DEPLOYGUARD_BACKUP_DIR", default=str(BASE_DIR / "var" / "backups")))
# A quarantine of at most this many rows of a table is never "an implausible share".
DEPLOYGUARD_SCRUB_MIN_ROWS = env.int("DEPLOYGUARD_SCRUB_MIN_ROWS", default=10)
DEPLOYGUARD_MONITOR_WRITES = env.bool("DEPLOYGUARD_MONITOR_WRITES", default=True)
DEPLOYGUARD_QUARANTINE_ON_VIOLATION = env.bool("DEPLOYGUARD_QUARANTINE_ON_VIOLATION", default=False)
# Documents' test-data rules: submitter names (exact, case-insensitive) and words (whole
# words, case-insensitive) that mark a submission as test data.
DOCUMENTS_TEST_SUBMITTERS = env.list(
    "DOCUMENTS_TEST_SUBMITTERS", default=["Anonymous User", "test", "Test User"]
)
DOCUMENTS_TEST_WORDS = env.list(
    "DOCUMENTS_TEST_WORDS", default=["test", "fake", "dummy", "sample", "example", "lorem"]
)

# Background jobs (README "Background jobs"): Django's tasks framework. Jobs live in the site's
# database and `manage.py db_worker` runs them, unless CELERY_BROKER_URL names a broker: then they
# go to Celery (`celery -A project worker`), and the "database" backend stays for db_worker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
DATABASE_TASKS = {"BACKEND": "django_tasks_db.DatabaseBackend"}
if CELERY_BROKER_URL:
    TASKS = {
        "default": {"BACKEND": "deployguard.jobs.celery_backend.CeleryBackend",
                    "OPTIONS": {"app": "project.celery.app"}},
        "database": DATABASE_TASKS,
    }  # fmt: skip
else:
    TASKS = {"default": DATABASE_TASKS}
# Unacknowledged Celery jobs of a worker that died come back after this many seconds (Redis).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Periodic jobs (task path: seconds between runs): db_worker schedules them itself, Celery beat
# from CELERY_BEAT_SCHEDULE. DEPLOYGUARD_INTEGRITY_WATCH_MINUTES=0 turns the integrity watch off.
WATCH_MINUTES = env.float("DEPLOYGUARD_INTEGRITY_WATCH_MINUTES", default=5.0)
DEPLOYGUARD_PERIODIC_JOBS = (
    {"deployguard.jobs.watch.integrity_watch": WATCH_MINUTES * 60} if WATCH_MINUTES else {}
)
CELERY_BEAT_SCHEDULE = {
    path: {"task": "deployguard.jobs.run", "args": (path,), "schedule": seconds}
    for path, seconds in DEPLOYGUARD_PERIODIC_JOBS.items()
}
# Publication notices: addresses mailed when a draft is published (empty: none sent).
DOCUMENTS_PUBLICATION_NOTICE_TO = env.list("DOCUMENTS_PUBLICATION_NOTICE_TO", default=[])
