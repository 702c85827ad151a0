"""Protocol conformance checks (Autobahn|Testsuite) for wsapp's WebSocket server."""
