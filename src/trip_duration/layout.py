"""Every S3 key the project reads or writes, in one place (documented in the README).

```
raw/{taxi}_tripdata_YYYY-MM.parquet                        TLC month as published (never modified)
quarantine/<raw key>                                       copy of a rejected raw file
quarantine/<raw key>.reason.json                           why it was rejected
quarantine/rows/taxi={taxi}/year=YYYY/month=MM.parquet     rejected rows, with rejection_reason
validated/taxi={taxi}/year=YYYY/month=MM/trips.parquet     rows that passed validation
reports/ingest/taxi={taxi}/year=YYYY/month=MM/schema.json  schema verdict (and layout) of the raw file
reports/ingest/taxi={taxi}/year=YYYY/month=MM/rows.json    row-level filter counts
reports/ingest/taxi={taxi}/year=YYYY/month=MM/outcome.json the month's ingest outcome, written last: readers require it
reports/promotion/taxi={taxi}/train=YYYY-MM/version=N.json promotion gate decision
candidates/taxi={taxi}/train=YYYY-MM/fit=<flow run id>/model.json  a GPU fit's model (JSON + UBJSON booster)
candidates/taxi={taxi}/train=YYYY-MM/fit=<flow run id>/usage.json  that fit pod's seconds and requests
predictions/taxi={taxi}/<batch>/model_version=N/predictions.parquet
reports/inference/taxi={taxi}/<batch>/model_version=N/summary.json
reports/inference/taxi={taxi}/<batch>/model_version=N/drift.json   the batch against the champion's training month
reports/profile/taxi={taxi}/year=YYYY/month=MM/profile.json  a validated month's drift profile (computed once)
events/handled/<event id>.json                             the run that acted on a Prefect event (a replay finds it)
mlflow/                                                    MLflow artifacts (via the tracking server)
```
``<batch>`` is ``year=YYYY/month=MM`` for a whole month, else ``range=START_END``.
``{taxi}`` is ``yellow`` or ``green`` (trip_duration.schema.TAXI_TYPES); raw keys are TLC's own file names.
A key depends only on its inputs (type, month, batch, model version): a rerun replaces, never duplicates.
"""

from __future__ import annotations

from trip_duration.periods import DateRange, Month


def raw_key(taxi: str, month: Month) -> str:
    return f"raw/{taxi}_tripdata_{month}.parquet"


def quarantine_key(source_key: str) -> str:
    return f"quarantine/{source_key}"


def quarantine_reason_key(source_key: str) -> str:
    return f"quarantine/{source_key}.reason.json"


def _month_part(taxi: str, month: Month) -> str:
    return f"taxi={taxi}/year={month.year:04d}/month={month.month:02d}"


def validated_key(taxi: str, month: Month) -> str:
    return f"validated/{_month_part(taxi, month)}/trips.parquet"


def schema_report_key(taxi: str, month: Month) -> str:
    return f"reports/ingest/{_month_part(taxi, month)}/schema.json"


def rows_report_key(taxi: str, month: Month) -> str:
    return f"reports/ingest/{_month_part(taxi, month)}/rows.json"


def ingest_outcome_key(taxi: str, month: Month) -> str:
    return f"reports/ingest/{_month_part(taxi, month)}/outcome.json"


def rejected_rows_key(taxi: str, month: Month) -> str:
    return quarantine_key(f"rows/{_month_part(taxi, month)}.parquet")


def promotion_report_key(taxi: str, train_month: Month, version: int | str) -> str:
    return f"reports/promotion/taxi={taxi}/train={train_month}/version={version}.json"


def candidate_key(taxi: str, train_month: Month, fit_run: str, name: str = "model.json") -> str:
    """What one run of the ``fit`` deployment wrote (README, "Only the fit on the GPU"): keyed by its flow run,
    so a fit that is run again never overwrites the model another training run is evaluating."""
    return f"candidates/taxi={taxi}/train={train_month}/fit={fit_run}/{name}"


def predictions_key(taxi: str, batch: DateRange, model_version: int | str) -> str:
    return f"predictions/taxi={taxi}/{batch.label}/model_version={model_version}/predictions.parquet"


def inference_summary_key(taxi: str, batch: DateRange, model_version: int | str) -> str:
    return f"reports/inference/taxi={taxi}/{batch.label}/model_version={model_version}/summary.json"


def drift_report_key(taxi: str, batch: DateRange, model_version: int | str) -> str:
    return f"reports/inference/taxi={taxi}/{batch.label}/model_version={model_version}/drift.json"


def profile_key(taxi: str, month: Month) -> str:
    return f"reports/profile/{_month_part(taxi, month)}/profile.json"


def handled_event_key(event_id: str) -> str:
    """Written by the run an event trigger started, once it acted: a replayed event's run finds it and stops."""
    return f"events/handled/{event_id}.json"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"
