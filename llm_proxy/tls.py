"""TLS termination (`server.tls`): the proxy's own HTTPS, no nginx needed on a VM.

One server context for the process; SIGHUP loads the certificate and key again into it, so
new connections get the renewed certificate (certbot, cert-manager) while open ones go on.
A renewal that does not load (a half-written file, a key that does not match) is logged and
the old certificate keeps serving.
"""

from __future__ import annotations

import ssl

import structlog

from llm_proxy.config.model import TlsSettings

log = structlog.get_logger()


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """Raises OSError or ssl.SSLError when the files do not load."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(settings.cert_file, settings.key_file)
    if settings.client_ca_file is not None:
        context.load_verify_locations(settings.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def reload_certificate(context: ssl.SSLContext, settings: TlsSettings) -> bool:
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
        if settings.client_ca_file is not None:
            context.load_verify_locations(settings.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        log.error(
            "tls_reload_failed",
            error=type(exc).__name__,
            detail=str(exc)[:200],
            kept="the certificate loaded before",
        )
        return False
    log.info("tls_reloaded", cert_file=settings.cert_file)
    return True
