"""A project without the documents app: deployguard protecting another app's data (a shelf of
books), to prove it needs nothing of documents. WITHOUT_DOCUMENTS_APPS (comma-separated dotted
names) adds deploy test apps, as tests/deploy_apps/settings.py does with DEPLOY_TEST_APPS."""

import os

from project.settings import *  # noqa: F403

EXTRA_APPS = [name for name in os.environ.get("WITHOUT_DOCUMENTS_APPS", "").split(",") if name]
INSTALLED_APPS = [
    *(app for app in INSTALLED_APPS if app != "documents"),  # noqa: F405
    "tests.without_documents.shelf",
    *EXTRA_APPS,
]
# documents/ is not part of this project: its code is not audited either.
DEPLOYGUARD_WRITE_PATHS = {"allowed": [], "exclude": ["benchmarks/*", "documents/*"]}
DEPLOYGUARD_DEPLOY_LOG = os.environ.get("DEPLOYGUARD_DEPLOY_LOG", str(VAR_DIR / "deploys.log"))  # noqa: F405
# The project's own routes include the public site, which is documents'.
ROOT_URLCONF = "tests.without_documents.urls"
