"""Runs, their events and artifacts, and service keys (filled in by the runs work)."""
