"""The admin surface: the `jobqueue` command line and the process runners it starts."""
