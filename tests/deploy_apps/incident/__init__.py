"""The incident, shipped as one release: a data migration, a post_migrate receiver, an
AppConfig.ready() hook and a background job that together try to create 5 submissions and 3
drafts. Like the incident's code, each catches its own errors and only logs them, which is why
nobody noticed: deploy_safe must notice anyway.
"""
