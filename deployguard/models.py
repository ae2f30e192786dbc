"""deployguard's models. Integrity keeps its own in models_integrity."""

from __future__ import annotations

from deployguard.models_integrity import ScrubRow, ScrubRun

__all__ = ["ScrubRow", "ScrubRun"]
