# syntax=docker/dockerfile:1
# byteleap-validator: challenges, scoring, weights and the renter API, on PostgreSQL.
# Build from the repository root:  docker build -f docker/validator.Dockerfile -t byteleap/validator .
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/byteleap
COPY pyproject.toml README.md LICENSE ./
COPY byteleap ./byteleap
COPY daemonkit ./daemonkit
COPY neurons ./neurons
COPY workers ./workers
COPY devnet ./devnet
COPY migrations ./migrations
RUN /opt/byteleap/bin/pip install ".[validator]"

FROM python:3.12-slim-bookworm
LABEL org.opencontainers.image.title="byteleap-validator" \
      org.opencontainers.image.description="ByteLeap validator (Bittensor subnet 128)" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 byteleap \
 && useradd --system --create-home --home-dir /var/lib/byteleap --uid 10001 --gid 10001 byteleap \
 && install -d -o 10001 -g 10001 /var/lib/byteleap/data
COPY --from=build /opt/byteleap /opt/byteleap
ENV PATH=/opt/byteleap/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BYTELEAP_CONFIG=/etc/byteleap/validator.yaml \
    BYTELEAP_LOGGING__FORMAT=json
USER 10001:10001
WORKDIR /var/lib/byteleap
# 8093: renter API, 9103: metrics
EXPOSE 8093 9103
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BYTELEAP_METRICS__PORT', '9103') + '/metrics', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["byteleap-validator"]
CMD ["run"]
