"""The sync domain: plain functions that turn events into Salesforce writes. Knows nothing of Celery."""
