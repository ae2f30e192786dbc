"""A table whose columns a deploy changes: 0002 drops one and, per DEPLOY_TEST_RESHAPE, rewrites or keeps
the values of the others (set up to 0001 with rows before the deploy)."""
