"""deploy_safe: check, freeze, back up, migrate, verify, and undo on failure (the orchestrator is run.py).

deployguard's ready() imports child.py alone, so a process that is not deploying loads nothing more.
"""
