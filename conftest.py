"""Root pytest configuration: the test environment is chosen before Django's settings load."""

import os

os.environ.setdefault("DJANGO_ENV", "test")
