"""The project package; it loads the Celery app so that enqueuing from Django finds it."""

from project.celery import app as celery_app

__all__ = ("celery_app",)
