# syntax=docker/dockerfile:1
#
# One image for every consent service. The entry point is `consentctl`; the command
# picks the role:
#   serve api | serve relay | serve propagator | serve demo-processor | migrate
#
# Build from the repository root:  docker build -t consent-platform:local .
# Stages: `uv` (the uv binary only), `build` (resolves the locked environment),
# `runtime` (Python, the virtual environment, nothing else: no uv, no compiler, no pip).

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11-slim-trixie AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/consent/venv
WORKDIR /src
# Third-party dependencies first, exactly as locked: this layer is reused while only the
# code changes. Wheels only; nothing here needs a compiler.
# The workspace member's metadata (clients/python: consent_client, which the demo
# processors use) comes with them; no workspace package is installed yet.
COPY pyproject.toml uv.lock README.md ./
COPY clients/python/pyproject.toml clients/python/README.md clients/python/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace
# Then the project and consent_client, installed as regular (non-editable) packages.
COPY services/ services/
COPY clients/python/src/ clients/python/src/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim-trixie AS runtime
LABEL org.opencontainers.image.title="consent-platform" \
      org.opencontainers.image.description="Consent API, outbox relay and propagator (consentctl)" \
      org.opencontainers.image.licenses="Apache-2.0"
# An unprivileged user with a fixed id (Kubernetes runAsNonRoot checks the numeric id),
# and no package tooling left in the image.
RUN groupadd --system --gid 10001 consent \
    && useradd --system --uid 10001 --gid consent --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin consent \
    && python -m pip uninstall --yes --quiet pip setuptools wheel
# Same path as in the build stage: the venv's scripts point at /opt/consent/venv/bin/python.
COPY --from=build /opt/consent/venv /opt/consent/venv
ENV PATH="/opt/consent/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONSENT_DATA_DIR=/tmp/consent
WORKDIR /opt/consent
USER 10001:10001
# 8000: the API; 8081: health and metrics of the relay and the propagator (--health-port).
EXPOSE 8000 8081
ENTRYPOINT ["consentctl"]
CMD ["serve", "api"]
