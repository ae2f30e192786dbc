"""The write-path audit: a static catalogue of every place in the code that can write data.

`audit(config_from_settings())` scans the project (nothing is run) and applies the
DEPLOYGUARD_WRITE_PATHS policy; `manage.py audit_write_paths` and the deploy
pipeline's pre-checks both go through it.
"""

from __future__ import annotations

from deployguard.write_paths.policy import AuditConfig, AuditReport, Violation, audit, config_from_settings
from deployguard.write_paths.scanner import Finding, ModelIndex, classify_sql, scan_tree

__all__ = [
    "AuditConfig",
    "AuditReport",
    "Finding",
    "ModelIndex",
    "Violation",
    "audit",
    "classify_sql",
    "config_from_settings",
    "scan_tree",
]
