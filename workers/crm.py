"""The CRM sync cycle: contacts changed in Salesforce flow back to the index and to Unify."""

from __future__ import annotations


def run_cycle(app) -> dict:
    """One cycle for this deployment's workspace; returns its counts."""
    return {"skipped": "not implemented yet"}
