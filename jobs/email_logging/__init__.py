"""Email logging: a shared mailbox's Inbox turned into interaction log entries."""
