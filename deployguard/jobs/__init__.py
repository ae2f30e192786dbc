"""Deploy-aware background jobs: workers hold jobs while deploy mode is on and put back the ones
that meet the freeze. `db_worker` (django-tasks-db) and Celery both run jobs through `runner`."""
