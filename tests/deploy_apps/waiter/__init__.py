"""A migration that, per DEPLOY_TEST_WAITER, waits mid-deploy for the test to act ("wait": it writes
DEPLOY_TEST_SIGNAL_FILE, then waits for DEPLOY_TEST_RELEASE_FILE) or switches deploy mode off itself
("switch_off", through deployguard's state functions)."""
