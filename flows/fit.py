"""The GPU fit of a training run: Kedro's ``fit`` pipeline (XGBoost on month M) in its own pod on the gpu
queue. The training run (flows/training.py, on the cpu queue) starts it, runs everything else meanwhile, and
reads the model it writes to S3 (README, "Only the fit on the GPU")."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.kedro_tasks import run_pipeline
from flows.parameters import DeviceParam, MonthParam, TaxiParam
from trip_duration import cost, layout
from trip_duration.config import get_settings
from trip_duration.io import s3
from trip_duration.periods import Month
from trip_duration.schema import parse_taxi

#: The deployment a training run starts for its fit (prefect.yaml)
FIT_DEPLOYMENT = "training-fit/fit"


@flow(name="training-fit", description="XGBoost on month M on a GPU node, for the training run that started it.")
def training_fit(train_month: MonthParam, taxi: TaxiParam = "yellow", device: DeviceParam = "auto") -> str:
    """Fits the model on ``train_month`` (ingested by the training run) and writes it, with this pod's usage,
    under ``candidates/taxi=<taxi>/train=<month>/fit=<this flow run>/``. Returns the model's URI."""
    taxi, train = parse_taxi(taxi), Month.parse(train_month, key="train_month")
    fit_run, bucket = str(flow_run.id), get_settings().require_bucket()
    run_pipeline("fit", {"train_month": str(train), "taxi": taxi, "training.device": device, "fit_run": fit_run},
                 label=f"fit-{taxi}-{train}")
    pod = cost.record(label="this fit's pod")
    s3.put_json(bucket, layout.candidate_key(taxi, train, fit_run, "usage.json"), pod.to_json())
    get_run_logger().info("pod usage: %s (%s)", pod.usage_line(), pod.label)
    return layout.s3_uri(bucket, layout.candidate_key(taxi, train, fit_run))
