# Code location image: serves pipelines.definitions over gRPC to a Dagster webserver/daemon.
# Build: docker build -t llmops-code-location .
# CUDA hosts: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    LLMOPS_DATA_DIR=/opt/dagster/data \
    HF_HUB_DISABLE_TELEMETRY=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    RAGAS_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false \
    DO_NOT_TRACK=1

# tesseract with English and Arabic for the OCR fallback; libgl-free OpenCV is in the lock.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        tesseract-ocr tesseract-ocr-eng tesseract-ocr-ara libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid 10001 --create-home dagster
WORKDIR /opt/dagster/app

# Locked dependencies first, so code changes do not reinstall them.
COPY requirements.lock ./
RUN pip install --extra-index-url "${TORCH_INDEX}" -r requirements.lock

COPY pyproject.toml README.md workspace.yaml dagster.yaml ./
COPY llmops ./llmops
COPY pipelines ./pipelines
COPY assets ./assets
COPY resources ./resources
COPY sensors ./sensors
COPY configs ./configs
RUN pip install --no-deps --no-build-isolation . \
    && mkdir -p "${DAGSTER_HOME}" "${LLMOPS_DATA_DIR}" \
    && cp dagster.yaml "${DAGSTER_HOME}/dagster.yaml" \
    && chown -R 10001:10001 /opt/dagster

USER 10001
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "pipelines.definitions"]
