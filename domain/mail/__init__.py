"""Outbound email: accounts, scenarios, outbox, sent emails, view policies (SPEC §3)."""
