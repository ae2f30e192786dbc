"""A data migration that writes migrate's bookkeeping tables (DEPLOY_TEST_PERMSWAP says how): swaps two
permissions' codenames, so that whoever may view submissions may publish them; or records a migration
that never ran; or adds a permission no model declares."""
