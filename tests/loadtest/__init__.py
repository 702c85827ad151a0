"""Tests of the load tester (python -m wsapp.loadtest) against a live serve.py."""
