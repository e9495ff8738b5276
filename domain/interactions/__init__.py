"""Email logging: contacts, the interaction log, opportunities, and the matching rules."""
