"""Load tester for wsapp servers: `python -m wsapp.loadtest SCENARIO [options]`.

Greenlet WebSocket clients on gevent, spread over processes and source addresses, with a live
display, a summary table, a JSON report and a PNG. See docs/loadtest.md. Nothing is imported
here, so worker processes load only what they use.
"""
