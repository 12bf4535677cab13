"""Configuration of the cloud provider types for tests: credentials that look real (a
service account JSON, AWS keys) and are never valid, and provider entries built from them."""

from __future__ import annotations

import json
from typing import Any, Final

GEMINI_KEY: Final = "AIzaSyD-0123456789abcdefghijklmnopqrstu"
AWS_KEY_ID: Final = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET: Final = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_TOKEN: Final = "FwoGZXIvYXdzEXAMPLEsessiontoken0123456789"
PRIVATE_KEY: Final = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7secret\n"
    "-----END PRIVATE KEY-----\n"
)
REFRESH_TOKEN: Final = "1//0gREFRESHtokenSECRETvalue"
CLIENT_SECRET: Final = "GOCSPX-clientSECRETvalue"
SERVICE_ACCOUNT: Final[dict[str, Any]] = {
    "type": "service_account",
    "project_id": "my-project-123",
    "private_key_id": "abc123",
    "private_key": PRIVATE_KEY,
    "client_email": "proxy@my-project-123.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
}
SERVICE_ACCOUNT_JSON: Final = json.dumps(SERVICE_ACCOUNT)
AUTHORIZED_USER: Final[dict[str, Any]] = {
    "type": "authorized_user",
    "client_id": "764086051850-abc.apps.googleusercontent.com",
    "client_secret": CLIENT_SECRET,
    "refresh_token": REFRESH_TOKEN,
}
# What must never be shown: every secret above, or a recognisable part of it.
SECRETS: Final = (
    GEMINI_KEY,
    AWS_KEY_ID,
    AWS_SECRET,
    AWS_TOKEN,
    "MIIEvQ",
    REFRESH_TOKEN,
    CLIENT_SECRET,
)


def leaked(text: str) -> list[str]:
    """The secrets that `text` shows (none, hopefully)."""
    return [secret for secret in SECRETS if secret in text]


def vertex(**fields: Any) -> dict[str, Any]:
    return {"name": "v", "provider_type": "vertex", "project": "my-project-123", **fields}


def bedrock(**fields: Any) -> dict[str, Any]:
    return {"name": "b", "provider_type": "bedrock", "region": "us-east-1", **fields}


def gemini(**fields: Any) -> dict[str, Any]:
    return {"name": "g", "provider_type": "gemini", "api_key": GEMINI_KEY, **fields}
