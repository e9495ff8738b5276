"""The one way to talk to Microsoft: tokens (identity), the HTTP client factory (http),
the retry policy (retry) and the client that puts them together (client). The
Dataverse client, the Graph mail connector, the shared-mailbox readers and SMTP OAuth
use these; each maps the errors to its own."""
