"""Local stand-ins for the outside services (Microsoft identity, Graph mail, SMTP), used
by the tests, the benchmarks and the demo. They follow Microsoft's documented request
and response shapes and can inject throttling, server errors and expired tokens."""
