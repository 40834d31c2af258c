"""The `spoke` command line."""
