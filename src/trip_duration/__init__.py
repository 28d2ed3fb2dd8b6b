"""NYC yellow-taxi trip-duration prediction: a Kedro project orchestrated by Prefect."""

__version__ = "0.1.0"
