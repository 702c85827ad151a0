"""The real-time layer: channels, users, presence, recovery, per-user push, the /ws protocol,
the HTTP API and the JS client, as a Flask extension (`Realtime`, ext.py). Built on
wsapp.websocket; knows nothing of the demo."""
