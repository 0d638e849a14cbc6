"""sfsync's worker side: the Celery app and tasks, the sync domain, the Salesforce gateway, the CLI."""
