"""llm-proxy: a fast, OpenAI-compatible LLM API reverse proxy on aiohttp."""

__version__ = "0.1.0"
