"""pytest plugin loaded with -p before pytest-django reads the settings: selects DJANGO_ENV=test."""

import os

os.environ.setdefault("DJANGO_ENV", "test")
