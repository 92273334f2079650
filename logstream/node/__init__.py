"""What both roles and the client share: serving, channels, addresses, TLS, auth, tasks, health, logs, debug."""
