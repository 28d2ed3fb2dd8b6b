"""The flows' parameter types. Their JSON schema carries the accepted form, and deployments
enforce their schema (``enforce_parameter_schema: true``), so the Prefect server refuses
``-p train_month=banana`` when the run is created, naming the parameter. The flows still
parse every value themselves (a run started without a deployment is not checked by the server).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from flows import kedro_tasks  # noqa: F401 - puts src/ on the path
from trip_duration.periods import DAY_PATTERN, MONTH_PATTERN

MonthParam = Annotated[str, Field(pattern=MONTH_PATTERN, description="a month, YYYY-MM (e.g. 2023-01)")]
DayParam = Annotated[str, Field(pattern=DAY_PATTERN, description="a day, YYYY-MM-DD (e.g. 2023-02-01)")]
DeviceParam = Literal["auto", "cpu", "cuda"]
#: yellow or green (trip_duration.schema.TAXI_TYPES): the TLC files, S3 keys and registered model of a run
TaxiParam = Literal["yellow", "green"]
#: the id of the Prefect event a trigger started the run for (prefect.yaml passes ``{{ event.id }}``)
EventIdParam = Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{36}$", description="a Prefect event id (a UUID)")]
