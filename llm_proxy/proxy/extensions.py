"""The proxy's own request fields, read and taken out before a body is sent on:

* `x-llm-proxy-fallbacks: none` (or `a, b`): the request opts out of its model's fallbacks,
  or names its own chain; in a JSON body, `"llm_proxy": {"fallbacks": "none" | [...]}` (the
  SDKs' `extra_body`). Every model named must be one the key may use (a 403 otherwise) and
  one the proxy serves (a 400): a request cannot reach further through a chain than it could
  by naming the model.
* `metadata.tags` (a list of strings, read by the routing rules): upstreams refuse a list in
  `metadata`, so it is taken out (and `metadata` with it, when nothing else is left).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from multidict import istr

from llm_proxy import errors
from llm_proxy.proxy.keyring import model_not_allowed
from llm_proxy.proxy.state import RequestState

FALLBACKS_HEADER: Final = istr("x-llm-proxy-fallbacks")  # (istr: looked up without lowering)
EXTENSION: Final = "llm_proxy"
EXTENSION_KEYS: Final = frozenset({"fallbacks"})
MAX_OWN_CHAIN: Final = 16


def take_extensions(
    state: RequestState, body: bytes, data: dict[str, Any], tags: bool
) -> tuple[bytes, dict[str, Any]]:
    """The body and its data without the proxy's fields (`llm_proxy`, and with `tags` the
    metadata's tags), re-encoded only when one was there; `llm_proxy.fallbacks` is kept
    for `own_fallbacks`."""
    out = data
    if EXTENSION in data:
        out = dict(data)
        extension = out.pop(EXTENSION)
        if not isinstance(extension, dict) or not EXTENSION_KEYS.issuperset(extension):
            raise errors.bad_param(
                EXTENSION, "`llm_proxy` must be an object with `fallbacks` only."
            )
        if "fallbacks" in extension:
            state.fallbacks = _chain(extension["fallbacks"], f"{EXTENSION}.fallbacks")
    metadata = out.get("metadata")
    if tags and isinstance(metadata, dict) and isinstance(metadata.get("tags"), list):
        if out is data:
            out = dict(data)
        rest = {k: v for k, v in metadata.items() if k != "tags"}
        if rest:
            out["metadata"] = rest
        else:
            del out["metadata"]
    if out is data:
        return body, data
    return orjson.dumps(out), out


def own_fallbacks(state: RequestState, header: str | None) -> None:
    """The request's own chain (the header's, unless the body gave one), checked against
    its key and the routes: `state.fallbacks`."""
    own = state.fallbacks
    if own is None and header is not None:
        own = _chain(header, FALLBACKS_HEADER)
    if not own:
        state.fallbacks = own
        return
    key = state.api_key
    routes = state.snapshot.routes
    for name in own:
        if key is not None and not key.may_use(name):
            raise model_not_allowed(name, key.name)
        if routes.resolve(name) is None:
            raise errors.bad_param(
                "fallbacks", f"The fallback model `{name}` is not served by this proxy."
            )
    state.fallbacks = own


def _chain(value: Any, where: str) -> tuple[str, ...]:
    """`none`, or model names (a list, or a comma-separated string)."""
    if isinstance(value, str):
        if value.strip().lower() in ("none", ""):
            return ()
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise errors.bad_param("fallbacks", f"`{where}` must be `none` or a list of model names.")
    if len(value) > MAX_OWN_CHAIN:
        raise errors.bad_param(
            "fallbacks", f"`{where}` names {len(value)} models; at most {MAX_OWN_CHAIN}."
        )
    if any(len(v) > 256 for v in value):
        raise errors.bad_param("fallbacks", f"`{where}` names a model longer than 256 characters.")
    return tuple(dict.fromkeys(value))
