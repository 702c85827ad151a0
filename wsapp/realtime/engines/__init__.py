"""Where messages are kept and how they cross processes (see base.py for the contracts)."""
