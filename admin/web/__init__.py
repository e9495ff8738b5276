"""The web process: the browser console and the HTTP API (`jobqueue web`)."""
