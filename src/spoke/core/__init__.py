"""Cross-cutting building blocks: database, jobs, errors, crypto, HTTP plumbing."""
