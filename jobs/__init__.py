"""The work that runs, registered by name, and the clients for outside services."""
