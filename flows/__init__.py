"""Thin Prefect flows over the Kedro pipelines: one file per deployment family."""
