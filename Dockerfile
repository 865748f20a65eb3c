# The enrollments worker (and CLI) image. Built by docker-compose.yml's `worker` service:
#   docker compose up --build --scale worker=3
# The container runs `enrollments db upgrade && enrollments worker` (see docker-compose.yml).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (cached while only the code changes), then the code.
COPY pyproject.toml README.md ./
COPY adapters ./adapters
COPY activities ./activities
COPY workflows ./workflows
COPY starter ./starter
COPY migrations ./migrations
RUN pip install .

RUN useradd --create-home --uid 10001 enrollments
USER enrollments

# Prometheus metrics of the SDK and the project (ENROLLMENTS_METRICS_PORT; bound to ENROLLMENTS_METRICS_HOST).
EXPOSE 9464

CMD ["sh", "-c", "enrollments db upgrade && exec enrollments worker"]
