"""The proxy plane: the request path from a client's call to the upstream's answer (handlers,
failover, relay, routing, keys and limits, the upstream client, usage accounting)."""
