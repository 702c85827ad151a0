"""Delivery: where messages are kept (Store) and how they cross processes (Broker)."""
