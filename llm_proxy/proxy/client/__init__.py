"""The upstream HTTP/1.1 client, as a package (httpcore's `_async/` is the model)."""
