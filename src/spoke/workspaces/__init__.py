"""Tenants: workspaces, their members and roles, and the keys that authenticate callers."""
