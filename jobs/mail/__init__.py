"""Outbound email: composing to the outbox, the dispatch job, and the connectors."""
