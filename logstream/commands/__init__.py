"""The `logstream` commands: one module per command, each `main(argv) -> int`; user errors become one line here."""
