"""One module per `netdef` command (see netdef/cli.py)."""
