"""The refusal deployguard raises, and the messages that say how to get out of it."""

from __future__ import annotations

from deployguard.status import DeployModeStatus

REFUSED = "Deploy mode is on: {action} refused. {how} {way_out}"
WAY_OUT_DATABASE = (
    "Writes resume when it is turned off: run `manage.py deploy_mode off` (or POST /_deploy/mode); "
    "deploy bookkeeping goes through `deployguard.allow_writes(reason)`."
)
WAY_OUT_ENVIRONMENT = (
    "Restart this process without DEPLOYMENT_MODE (or with DEPLOYMENT_MODE=false); "
    "`manage.py deploy_mode off` does not lift it."
)
WAY_OUT_PROCESS = (
    "deploy_safe loads the project with every write to protected tables frozen: move this write "
    "out of start-up code (AppConfig.ready, module import) into a service an admin calls."
)
WAY_OUT_UNREADABLE = (
    "Check the database connection and that deployguard's migrations are applied "
    "(`manage.py migrate deployguard`); `manage.py deploy_mode status` shows the state once it can be read."
)


class DeployModeActive(Exception):
    """A write was refused because deploy mode is on (or its state could not be read)."""

    def __init__(self, action: str, status: DeployModeStatus) -> None:
        self.action = action
        self.status = status
        super().__init__(refusal_message(action, status))


def refusal_message(action: str, status: DeployModeStatus) -> str:
    way_out = {
        "environment": WAY_OUT_ENVIRONMENT,
        "process": WAY_OUT_PROCESS,
        "unreadable": WAY_OUT_UNREADABLE,
    }.get(status.source, WAY_OUT_DATABASE)
    return REFUSED.format(action=action, how=status.describe(), way_out=way_out)


class DeployModeAlreadyOn(Exception):
    """`deploy_mode on` found it on already: another deploy may be running."""

    def __init__(self, status: DeployModeStatus) -> None:
        self.status = status
        super().__init__(
            f"Deploy mode is already on. {status.describe()} If that deploy is over, run "
            "`manage.py deploy_mode off` first."
        )


class DrainTimeout(Exception):
    """Transactions that wrote before deploy mode went on did not finish in time."""
