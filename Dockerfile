# The hub's one image: workers, connectors, emulator and simulator are commands of it.
FROM python:3.11-slim
WORKDIR /app
# openssl: `hub security make-certs` (the secure compose file's kafka-certs service)
RUN apt-get update && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY schemas ./schemas
RUN pip install --no-cache-dir . && useradd --create-home hub && mkdir -p /data /secrets && chown hub /data /secrets
USER hub
ENV HUB_DATA_DIR=/data HUB_WEB_HOST=0.0.0.0
EXPOSE 6066
CMD ["hub", "worker", "-l", "info"]
