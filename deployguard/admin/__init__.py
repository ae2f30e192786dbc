"""deployguard in the admin: the Operations section, and the integrity filter for other apps' changelists.

Importing this package (the admin's autodiscovery does) registers the operations pages:
deploy mode, deploys, integrity, quarantine runs and activity. Other apps' admins use
`IntegrityListFilter` and `ProvenanceAdminMixin` (an integrity badge, a provenance panel, read-only history).
"""

from __future__ import annotations

from deployguard.admin import activity, deploy_mode, deploys, integrity, quarantine  # noqa: F401
from deployguard.admin.filters import ANY_ERROR, IntegrityListFilter
from deployguard.admin.provenance import ProvenanceAdminMixin

__all__ = ["ANY_ERROR", "IntegrityListFilter", "ProvenanceAdminMixin"]
