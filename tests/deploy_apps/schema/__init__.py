"""A harmless schema migration: one new model."""
