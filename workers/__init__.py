"""Dramatiq broker, the run actor and its middleware."""
