#   docker build -t trackstar-fulfillment .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=postgresql://user:pass@host:5432/db \
#       -e ENVIRONMENT=production -e TRACKSTAR_WEBHOOK_SECRET=whsec_... \
#       -e SECRET_KEY=... trackstar-fulfillment
#
# (.env.example lists every setting; docker-compose.yml runs it with PostgreSQL.)
#
# The code runs from the source tree in /srv (app/ and migrations/ side by side,
# which is where app/core/migrations.py looks for the Alembic scripts); the venv in
# /opt/venv holds the runtime dependencies only.

############################ builder: runtime dependencies
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# Only pyproject.toml, so this layer is rebuilt when the dependencies change,
# not on every code change. [project].dependencies is exactly what
# `pip install .` would install (no dev extra); the project itself is not
# installed into the venv, so there is one copy of `app`: the one in /srv.
# The runtime needs neither pip nor setuptools (about 25 MB): both are removed.
COPY pyproject.toml ./
RUN python -c "import tomllib; \
print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install -r requirements.txt \
    && pip uninstall -y setuptools pip

############################ runtime
FROM python:3.11-slim

# PYTHONPATH: `app` resolves to /srv/app from any working directory.
# DATABASE_URL: without one the service would use ./fulfillment.db, which the app
# user cannot create in the read-only /srv; this keeps SQLite in /srv/data (mount
# a volume there to keep it). Compose and real deployments set postgresql://.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/srv \
    PATH=/opt/venv/bin:$PATH \
    DATABASE_URL=sqlite:////srv/data/fulfillment.db

RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /srv
# Code stays root-owned and read-only for the app user.
COPY pyproject.toml ./
COPY migrations/ ./migrations/
COPY app/ ./app/
RUN python -m compileall -q app migrations \
    && install -d -o app -g app -m 0750 /srv/data

# Numeric, so that runtimes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001

EXPOSE 8000

# urllib, since the slim image has no curl; a non-2xx answer or no answer exits 1.
# The port matches the CMD below: change both together.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# `serve` applies pending migrations, then starts uvicorn.
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0"]
