"""The Redis engines: one connection and bus per URL and process, shared by store, broker and
presence."""
