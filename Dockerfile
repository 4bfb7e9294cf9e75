# One image for both roles: `calcstream worker` and `python -m producer_api`. It holds the
# `tracing` extra, so CALCSTREAM_TRACING=otlp works in it (the SDK is imported only when on).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY schemas ./schemas
COPY consumer ./consumer
COPY producer_api ./producer_api
COPY calcstream ./calcstream
RUN pip install ".[tracing]" && useradd --system --uid 10001 calcstream
USER calcstream

CMD ["calcstream", "worker"]
