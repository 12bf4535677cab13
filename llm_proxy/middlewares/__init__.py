"""The middleware chain. Order (outermost first) is fixed in `llm_proxy.app.create_app`."""
