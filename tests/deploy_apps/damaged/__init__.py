"""A migration that fails after damaging deploy_safe's backup: the restore cannot be trusted."""
