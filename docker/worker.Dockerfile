# syntax=docker/dockerfile:1
# byteleap-worker on a GPU host: NVML inventory and CuPy challenges.
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t byteleap/worker .
# Run with the NVIDIA container toolkit:  docker run --gpus all ... byteleap/worker
# The CUDA toolkit libraries CuPy needs come from the cupy-cuda12x[ctk] wheels; the base image
# brings the CUDA 12 runtime layout the NVIDIA toolkit mounts the driver into.
FROM nvidia/cuda:12.6.3-base-ubuntu24.04 AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3 -m venv /opt/byteleap
COPY pyproject.toml README.md LICENSE ./
COPY byteleap ./byteleap
COPY daemonkit ./daemonkit
COPY neurons ./neurons
COPY workers ./workers
COPY devnet ./devnet
COPY migrations ./migrations
RUN /opt/byteleap/bin/pip install ".[worker,gpu]"

FROM nvidia/cuda:12.6.3-base-ubuntu24.04
LABEL org.opencontainers.image.title="byteleap-worker" \
      org.opencontainers.image.description="ByteLeap worker (Bittensor subnet 128)" \
      org.opencontainers.image.licenses="MIT"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 byteleap \
 && useradd --system --create-home --home-dir /var/lib/byteleap --uid 10001 --gid 10001 byteleap \
 && install -d -o 10001 -g 10001 /var/lib/byteleap/data
COPY --from=build /opt/byteleap /opt/byteleap
ENV PATH=/opt/byteleap/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    BYTELEAP_CONFIG=/etc/byteleap/worker.yaml \
    BYTELEAP_LOGGING__FORMAT=json
USER 10001:10001
WORKDIR /var/lib/byteleap
# 9101: metrics
EXPOSE 9101
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BYTELEAP_METRICS__PORT', '9101') + '/metrics', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["byteleap-worker"]
CMD ["run"]
