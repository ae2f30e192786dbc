"""The incident's data migration: it creates submissions through apps.get_model."""
