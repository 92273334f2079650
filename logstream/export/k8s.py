"""Planned nodes -> Kubernetes manifests: the mediator as a one-replica Deployment with a
ClusterIP Service, the streamers as a StatefulSet (a volume claim per pod) behind a headless
Service, probes on each node's -metrics port (/healthz live, /readyz ready). Pure: no I/O.

The nodes run the flags `logstream run` gives them, with what only makes sense on one machine
replaced: bind 0.0.0.0, addresses from Services and pod names, paths from mounted volumes.
Probes and scrapes reach `-metrics` (/metrics, /healthz, /readyz only), bound to 0.0.0.0; the
profiling server (-pprof) stays as the cluster file has it, on the pod's loopback by default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from logstream.cluster import Node
from logstream.export import yaml
from logstream.supervisor.render import stop_wait_s

LOGS_MOUNT = "/var/lib/logstream/logs"
RUN_MOUNT = "/var/lib/logstream/run"
TOKEN_MOUNT = "/etc/logstream/token"
TLS_MOUNT = "/etc/logstream/tls"
# Where -metrics listens in a pod when the cluster file names no port (each pod has its own
# network namespace, so mediator and streamers share it); the Dockerfile's HEALTHCHECK uses it too.
METRICS_PORT = 9100
# The image's non-root user (see the Dockerfile); fsGroup makes the volumes writable for it.
UID = 10001
# A StatefulSet's pods carry a `controller-revision-hash` label of its name + 11 characters,
# and label values stop at 63: names derived from the cluster's stay well below.
MAX_BASE = 40
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# Files of a `kubernetes.io/tls` Secret; ca.crt by convention (cert-manager writes it too).
_TLS_KEYS = {"ca": "ca.crt", "crt": "tls.crt", "pk": "tls.key"}


class ExportError(ValueError):
    """What the cluster file asks for cannot be expressed as manifests."""


@dataclass(frozen=True)
class K8sOptions:
    image: str
    storage: str = "10Gi"
    storage_class: str | None = None


def base_name(cluster: str) -> str:
    """`logstream-NAME` as a DNS label (lower case, `_` and `.` as `-`)."""
    name = "logstream-" + re.sub(r"[_.]", "-", cluster.lower())
    if len(name) > MAX_BASE or not _DNS_LABEL.match(name):
        raise ExportError(f"cluster.name {cluster!r}: {name!r} is not a Kubernetes name of at most "
                          f"{MAX_BASE} characters (lower-case letters, digits, '-')")
    return name


def flag_values(flags: Sequence[str]) -> dict[str, str]:
    """`("-port=8080", ...)` -> {"port": "8080", ...}."""
    out = {}
    for flag in flags:
        name, _, value = flag.lstrip("-").partition("=")
        out[name] = value
    return out


def metrics_port(flags: Mapping[str, str]) -> int:
    """The port of the node's `-metrics HOST:PORT`, or METRICS_PORT when it has none (or port 0:
    probes need to know the port)."""
    port = int(flags["metrics"].rpartition(":")[2]) if flags.get("metrics") else 0
    port = port or METRICS_PORT
    if flags.get("pprof") == "true" and flags.get("pport") == str(port):
        raise ExportError(f"-pport {port} is also the port of -metrics in the pods: give pprof another pport")
    return port


def _literal(value: str) -> str:
    # Kubernetes expands $(VAR) in args and turns $$ into $: keep the cluster file's values as they are.
    return value.replace("$", "$$")


def _args(role: str, flags: Mapping[str, str], replaced: Mapping[str, str]) -> list[str]:
    """The node's flags in their order, `replaced` values (already in args syntax) instead of
    theirs, and `replaced` flags the node did not have at the end."""
    args = [role]
    for name, value in flags.items():
        args.append(f"-{name}={replaced[name] if name in replaced else _literal(value)}")
    args += [f"-{name}={value}" for name, value in replaced.items() if name not in flags]
    return args


def _labels(base: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "logstream", "app.kubernetes.io/instance": base,
            "app.kubernetes.io/component": component}


def _mounts(node_flags: Mapping[str, str]) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Replaced flags, volumeMounts and (so far no) volumes for the token and the TLS files."""
    replaced = {"token-file": f"{TOKEN_MOUNT}/cluster.token"}
    mounts: list[dict[str, Any]] = [{"name": "token", "mountPath": TOKEN_MOUNT, "readOnly": True}]
    volumes: list[dict[str, Any]] = []  # the Secrets' volumes are added with the pod
    for flag, key in _TLS_KEYS.items():
        if flag in node_flags:
            replaced[flag] = f"{TLS_MOUNT}/{key}"
    if any(flag in node_flags for flag in _TLS_KEYS):
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
    return replaced, mounts, volumes


def _pod_spec(base: str, node: Node, args: list[str], grpc_port: int, metrics: int, image: str,
              mounts: list[dict[str, Any]], volumes: list[dict[str, Any]], tls: bool) -> dict[str, Any]:
    volumes = [*volumes, {"name": "token", "secret": {
        "secretName": f"{base}-token", "defaultMode": 0o440, "items": [{"key": "token", "path": "cluster.token"}]}}]
    if tls:
        volumes.append({"name": "tls", "secret": {"secretName": f"{base}-tls", "defaultMode": 0o440}})
    container = {
        "name": node.role,
        "image": image,
        "command": ["logstream"],
        "args": args,
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [{"name": "grpc", "containerPort": grpc_port, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": metrics, "protocol": "TCP"}],
        # Live: the process and its supervised tasks are well. Ready: it can take writes now.
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5,
                           "timeoutSeconds": 3, "failureThreshold": 2},
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        # SIGTERM, the node's -grace to drain, then a margin before SIGKILL (as under supervisord).
        "terminationGracePeriodSeconds": stop_wait_s(node),
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID},
        "containers": [container],
        "volumes": volumes,
    }


def _service(base: str, name: str, component: str, port: int, headless: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": _labels(base, component),
                            "ports": [{"name": "grpc", "port": port, "targetPort": "grpc", "protocol": "TCP"}]}
    if headless:
        # DNS names for pods that are not ready yet: a streamer becomes ready only once it holds a
        # lease, which needs the mediator to reach it (and it the mediator) first.
        spec.update({"clusterIP": "None", "publishNotReadyAddresses": True})
    else:
        spec["type"] = "ClusterIP"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": _labels(base, component)}, "spec": spec}


def mediator_documents(base: str, node: Node, options: K8sOptions) -> list[dict[str, Any]]:
    flags = flag_values(node.flags)
    metrics = metrics_port(flags)
    replaced, mounts, volumes = _mounts(flags)
    replaced.update({"host": "0.0.0.0", "metrics": f"0.0.0.0:{metrics}",
                     "lease-file": f"{RUN_MOUNT}/mediator.lease"})
    # The lease ledger survives container restarts in the pod (emptyDir); a new pod waits a full lease.
    mounts.append({"name": "run", "mountPath": RUN_MOUNT})
    volumes.append({"name": "run", "emptyDir": {}})
    labels = _labels(base, "mediator")
    pod = _pod_spec(base, node, _args("mediator", flags, replaced), node.port, metrics, options.image,
                    mounts, volumes, tls="crt" in flags)
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{base}-mediator", "labels": labels},
        "spec": {
            "replicas": 1,
            # Never two mediators at once: each would hand out leases for the same keys.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    return [
        _service(base, f"{base}-mediator", "mediator", node.port, headless=False),  # for clients
        _service(base, f"{base}-mediator-peers", "mediator", node.port, headless=True),  # for streamers
        deployment,
    ]


def streamer_documents(base: str, node: Node, count: int, mediator_port: int,
                       options: K8sOptions) -> list[dict[str, Any]]:
    flags = flag_values(node.flags)
    metrics = metrics_port(flags)
    service = f"{base}-streamers"
    replaced, mounts, volumes = _mounts(flags)
    replaced.update({
        "id": "$(POD_NAME)",
        "mediator": f"{base}-mediator-peers:{mediator_port}",
        "host": "0.0.0.0",
        "advertise": f"$(POD_NAME).{service}:{node.port}",
        "path": LOGS_MOUNT,
        "metrics": f"0.0.0.0:{metrics}",
    })
    mounts.append({"name": "logs", "mountPath": LOGS_MOUNT})
    labels = _labels(base, "streamer")
    pod = _pod_spec(base, node, _args("streamer", flags, replaced), node.port, metrics, options.image,
                    mounts, volumes, tls="crt" in flags)
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": options.storage}}}
    if options.storage_class is not None:
        claim["storageClassName"] = options.storage_class
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": f"{base}-streamer", "labels": labels},
        "spec": {
            "serviceName": service,
            "replicas": count,
            # Streamers do not wait for each other; the mediator places keys on whichever are live.
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
            "volumeClaimTemplates": [{"metadata": {"name": "logs", "labels": labels}, "spec": claim}],
        },
    }
    return [_service(base, service, "streamer", node.port, headless=True), statefulset]


def render(cluster: str, nodes: Sequence[Node], overridden: Sequence[str], options: K8sOptions) -> dict[str, str]:
    """{file name: YAML}: mediator.yaml and streamers.yaml. `overridden` names the streamers that
    have their own `[[streamer]]` table (one pod template cannot give them other settings)."""
    if overridden:
        raise ExportError(f"[[streamer]] tables ({', '.join(overridden)}) cannot be exported to Kubernetes: the "
                          "streamers' StatefulSet runs one pod template; put their settings in [streamers]")
    if not _QUANTITY.match(options.storage):
        raise ExportError(f"--storage {options.storage!r}: not a Kubernetes quantity (e.g. 10Gi, 500Mi)")
    base = base_name(cluster)
    mediator = next(node for node in nodes if node.role == "mediator")
    streamers = [node for node in nodes if node.role == "streamer"]
    files = {"mediator.yaml": yaml.dump_all(mediator_documents(base, mediator, options))}
    if streamers:
        files["streamers.yaml"] = yaml.dump_all(
            streamer_documents(base, streamers[0], len(streamers), mediator.port, options))
    return files
