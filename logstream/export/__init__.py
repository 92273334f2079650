"""`logstream export`'s renderers: a cluster's planned nodes -> systemd units, an include-able
supervisord program group, Kubernetes manifests. Pure: each returns {file name: text}."""
