"""deployguard in the admin: the Operations section, and the integrity filter for other apps' changelists.

Importing this package (the admin's autodiscovery does) registers the operations pages:
deploy mode, deploys, integrity, quarantine runs and activity.
"""

from __future__ import annotations

from deployguard.admin import activity, deploy_mode, deploys, integrity, quarantine  # noqa: F401
from deployguard.admin.filters import ANY_ERROR, IntegrityListFilter

__all__ = ["ANY_ERROR", "IntegrityListFilter"]
