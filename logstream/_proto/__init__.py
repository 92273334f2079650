"""Code generated from proto/logstream.proto by scripts/gen_proto.py; never edit by hand."""
