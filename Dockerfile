# An image that runs any logstream role (the entrypoint is the `logstream` command):
#   docker run IMAGE mediator -host 0.0.0.0 -pprof -phost 0.0.0.0
#   docker run IMAGE streamer -host 0.0.0.0 -mediator MEDIATOR:8000 -path /var/lib/logstream/logs -pprof
#   docker run -v "$PWD/cluster.toml:/etc/logstream/cluster.toml:ro" IMAGE run /etc/logstream/cluster.toml
# `logstream export FILE --format k8s` writes manifests that run this image (see the README).
# The HEALTHCHECK asks the node's debug server (-pprof) for /healthz; HEALTHCHECK_URL names another
# port (a streamer of a cluster file listens on 1112 and up).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY logstream ./logstream
# Wheels for logstream and every dependency, installed below without a compiler or build tools.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_URL=http://127.0.0.1:1111/healthz
# Non-root; the uid matches the Kubernetes manifests' runAsUser and fsGroup.
RUN groupadd --system --gid 10001 logstream \
 && useradd --system --uid 10001 --gid logstream --home-dir /var/lib/logstream --create-home \
            --shell /usr/sbin/nologin logstream
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /var/lib/logstream
USER 10001:10001
# gRPC: mediator 8000, streamers 8080 (and up); debug server (/metrics, /healthz, /readyz): 1111, 1112 (and up).
EXPOSE 8000 8080 1111 1112
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=2)"]
ENTRYPOINT ["logstream"]
CMD ["--help"]
