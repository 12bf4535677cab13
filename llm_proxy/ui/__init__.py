"""The admin web UI: static assets (`static/`) served at `/ui/` by `handler`."""
