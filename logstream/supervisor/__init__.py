"""A cluster under supervisord: render its configuration, run it, control it over XML-RPC."""
