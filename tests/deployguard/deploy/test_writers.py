"""Naming the code that tried to write: the project's frames of each exception in a traceback."""

from __future__ import annotations

from pathlib import Path

import deployguard
from deployguard.deploy.writers import parse_writers

BASE = Path("/srv/site")
GUARD = Path(deployguard.__file__).resolve().parent / "guard.py"

TRACEBACK = f"""Traceback (most recent call last):
  File "/srv/site/manage.py", line 22, in <module>
    main()
  File "/srv/site/.venv/lib/python3.11/site-packages/django/core/management/__init__.py", line 442, in execute
    utility.execute()
  File "/srv/site/sync/migrations/0002_seed.py", line 9, in seed
    Submission.objects.create(ml_number="ML-900")
  File "/srv/site/sync/helpers.py", line 4, in create
    return model.objects.create(**fields)
  File "{GUARD}", line 90, in __call__
    raise _refusal(verb, table, status)
deployguard.exceptions.DeployModeActive: Deploy mode is on: INSERT on "documents_submission" refused.
During handling of the above exception, another exception occurred:
Traceback (most recent call last):
  File "/srv/site/sync/apps.py", line 12, in ready
    raise RuntimeError("could not seed")
RuntimeError: could not seed
"""


def test_each_exception_is_named_with_the_project_frames_that_raised_it():
    assert parse_writers(TRACEBACK, BASE) == [
        {
            "exception": "DeployModeActive",
            "message": 'Deploy mode is on: INSERT on "documents_submission" refused.',
            "where": "sync/migrations/0002_seed.py:9 in seed() -> sync/helpers.py:4 in create()",
        },
        {"exception": "RuntimeError", "message": "could not seed", "where": "sync/apps.py:12 in ready()"},
    ]


def test_output_without_a_traceback_names_nobody():
    assert parse_writers("Operations to perform:\n  Apply all migrations: schema\n", BASE) == []


def test_a_project_under_a_directory_named_deployguard_keeps_its_frames():
    checkout = Path("/srv/deployguard")
    stderr = (
        "Traceback (most recent call last):\n"
        '  File "/srv/deployguard/sync/apps.py", line 12, in ready\n'
        "    raise RuntimeError('could not seed')\n"
        "RuntimeError: could not seed\n"
    )

    assert parse_writers(stderr, checkout) == [
        {"exception": "RuntimeError", "message": "could not seed", "where": "sync/apps.py:12 in ready()"}
    ]
