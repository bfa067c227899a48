# Seguibot service image: slim Python, non-root, health-checked.
# Without DATABASE_URL it keeps an SQLite file in /app/data (mount a volume there);
# with PostgreSQL, run `seguibot db upgrade` once per release (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 seguibot
WORKDIR /app
COPY pyproject.toml README.md config.yaml ./
COPY bot ./bot
COPY handlers ./handlers
COPY intents ./intents
COPY storage ./storage
# Installed in place so the defaults in /app/config.yaml travel with the code.
RUN pip install --no-cache-dir -e . && mkdir -p /app/data && chown seguibot /app/data
USER seguibot
WORKDIR /app/data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
CMD ["seguibot", "serve", "--host", "0.0.0.0", "--port", "8080"]
