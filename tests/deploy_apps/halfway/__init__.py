"""A migration that fails half way: its table is created (not atomic), then it raises."""
