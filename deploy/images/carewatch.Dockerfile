# The carewatch command (ingest service, dispatcher console, admin commands).
# Build context: the repository root (deploy/compose.yaml sets it).
FROM python:3.11-slim-bookworm
RUN useradd --system --create-home --uid 10001 carewatch
WORKDIR /opt/carewatch
COPY pyproject.toml README.md ./
COPY devices ./devices
COPY rules ./rules
COPY alerts ./alerts
COPY ingest ./ingest
COPY simulator ./simulator
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER carewatch
ENTRYPOINT ["carewatch"]
CMD ["ingest"]
