# Seguibot service image: slim Python, non-root, health-checked on /readyz.
#   docker build -t seguibot .
#   docker run -p 8080:8080 -v seguibot-data:/app/data seguibot     # SQLite in /app/data
# With PostgreSQL (DATABASE_URL), run `seguibot db upgrade` once per release before serving:
# docker-compose.yml does it in that order.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 seguibot
WORKDIR /app
# What the package is built from: pyproject.toml names README.md; the rest is the code and the
# defaults. config.yaml stays at /app, beside the code (installed in place, -e), and data_dir's
# default is then /app/data.
COPY pyproject.toml README.md config.yaml ./
COPY bot ./bot
COPY handlers ./handlers
COPY intents ./intents
COPY storage ./storage
RUN pip install --no-cache-dir -e . && mkdir -p /app/data && chown seguibot /app/data
USER seguibot
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2).status != 200)"]
CMD ["seguibot", "serve", "--host", "0.0.0.0", "--port", "8080"]
