"""`python -m spoke …` is the `spoke` command."""

from spoke.cli.main import main

main()
