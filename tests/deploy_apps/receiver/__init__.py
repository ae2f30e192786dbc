"""The incident's post_migrate receiver: it publishes drafts after every migrate."""
