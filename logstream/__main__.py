from logstream.cli import entry

entry()
