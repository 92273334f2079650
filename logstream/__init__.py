"""logstream: a log-collection cluster (mediator + streamers) speaking the Go Log Streamer protocol."""

__version__ = "0.1.0"
