"""Controls deploy_safe from a test at its named steps: pause there, or SIGKILL itself there."""
