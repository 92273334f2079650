"""Configuration: units, the per-role settings, the flag parser and the cluster file."""
