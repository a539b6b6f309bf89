# syntax=docker/dockerfile:1
# Triveni: one image for every process (serve, migrate, relay, worker, create-merchant).
#   docker build -t triveni .
#   docker run --rm -p 50051:50051 -p 8080:8080 -e POSTGRES_URL=... -e REDIS_URL=... \
#     -e KAFKA_BOOTSTRAP=... triveni
ARG PYTHON_VERSION=3.12

# --- builder: wheels of the server (.) and the client/stubs package (./clients) into a venv ------
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The client package first: it changes less often, so its layer is reused more.
COPY clients/ clients/
COPY pyproject.toml ./
COPY server/ server/
RUN pip wheel --no-deps --wheel-dir /wheels ./clients . \
 && pip install /wheels/*.whl \
 && python -c "import server, triveni.v1.payment_service_pb2"

# --- runtime: the venv only, as an unprivileged user ---------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TRIVENI_ENV=production \
    TRIVENI_LOG_FORMAT=json \
    TRIVENI_GRPC_PORT=50051 \
    TRIVENI_HTTP_PORT=8080
RUN groupadd --system --gid 10001 triveni \
 && useradd --system --uid 10001 --gid triveni --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin triveni \
 && mkdir -p /app \
 && chown triveni:triveni /app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 50051 8080
# /healthz is liveness only (no dependency checks), so a PostgreSQL outage does not get the
# container killed; /readyz is for load balancers.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRIVENI_HTTP_PORT', '8080'), timeout=2)"]
CMD ["python", "-m", "server", "serve"]
