"""Kills deploy_safe (SIGKILL) the instant deploy mode is on: as its switch commits, before anything else."""
