# syntax=docker/dockerfile:1
# The image of flow-run pods (and of the chart's MLflow server). Dependencies only:
# the project's code is pulled from S3 by each flow run (prefect.yaml `pull`).
# One image for CPU and GPU nodes: XGBoost's wheel carries CUDA and uses it where
# the NVIDIA device plugin exposes a GPU.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /build
COPY pyproject.toml uv.lock ./
# Locked, runtime dependencies only (no dev group, not the project itself).
RUN uv sync --frozen --no-dev --no-install-project --python python3 \
 && find /opt/venv -name '__pycache__' -path '*/tests/*' -prune -exec rm -rf {} + \
 && rm -rf /root/.cache

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="trip-duration" \
      org.opencontainers.image.description="Prefect flow-run image: Kedro, XGBoost (CUDA-capable), MLflow, prefect-kubernetes/aws" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
 && mkdir -p /app \
 && chown app:app /app
COPY --from=build /opt/venv /opt/venv
# The pull step of every flow run (prefect.yaml): fetches the deployment's code archive by its exact
# key and checks its SHA-256 and members before unpacking. In the image, not in the archive it checks.
COPY infra/code_pull.py /opt/trip-duration/code_pull.py
# Logs that outlive pods: the flow-run container runs its command through `pod_log.py tee` and the chart's
# `pod-log` sidecar ships the copy to S3 (README). Also not in the archive: it runs before the code is pulled.
COPY infra/pod_log.py /opt/trip-duration/pod_log.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DO_NOT_TRACK=1 \
    KEDRO_DISABLE_TELEMETRY=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    HOME=/home/app \
    PREFECT_HOME=/tmp/prefect \
    MPLCONFIGDIR=/tmp/matplotlib \
    TRIP_DURATION_CODE_PULL="python -I /opt/trip-duration/code_pull.py"
WORKDIR /app
USER 10001:10001
HEALTHCHECK NONE
CMD ["prefect", "version"]
