from logstream.commands.main import entry

entry()
