"""Prefect flows (composition only) and the `python -m flows` command line."""
