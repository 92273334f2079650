# An image that runs any logstream role (the entrypoint is the `logstream` command):
#   docker run IMAGE mediator -host 0.0.0.0 -metrics 0.0.0.0:9100
#   docker run IMAGE streamer -host 0.0.0.0 -mediator MEDIATOR:8000 -path /var/lib/logstream/logs -metrics 0.0.0.0:9100
#   docker run -v "$PWD/cluster.toml:/etc/logstream/cluster.toml:ro" IMAGE run /etc/logstream/cluster.toml
# `logstream export FILE --format k8s` writes manifests that run this image (see the README).
# The HEALTHCHECK asks the node's -metrics server (/metrics, /healthz and /readyz only, no profiling)
# for /healthz; HEALTHCHECK_URL names another address. Profiling (-pprof) is never needed for it.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY logstream ./logstream
# Wheels for logstream and every dependency of the server extra (the nodes and `run`), installed
# below without a compiler or build tools.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[server]'

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_URL=http://127.0.0.1:9100/healthz
# Non-root; the uid matches the Kubernetes manifests' runAsUser and fsGroup.
RUN groupadd --system --gid 10001 logstream \
 && useradd --system --uid 10001 --gid logstream --home-dir /var/lib/logstream --create-home \
            --shell /usr/sbin/nologin logstream
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'logstream[server]' && rm -rf /wheels
WORKDIR /var/lib/logstream
USER 10001:10001
# gRPC: mediator 8000, streamers 8080 (and up); -metrics (/metrics, /healthz, /readyz): 9100.
EXPOSE 8000 8080 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["logstream"]
CMD ["--help"]
