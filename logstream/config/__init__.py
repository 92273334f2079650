"""Configuration: units, the cluster's timing rules, the per-role settings and the Go-style flag parser."""
