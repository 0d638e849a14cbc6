"""Workspaces: the registry of Unify workspaces this deployment serves, each connected to its own org."""
