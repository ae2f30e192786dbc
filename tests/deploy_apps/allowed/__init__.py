"""A data migration the operator names with --allow-data-migration: it adds a group."""
