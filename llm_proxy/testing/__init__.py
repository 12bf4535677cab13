"""Tools shipped for testing against the proxy (the fake upstream of `llm-proxy mock-upstream`)."""
