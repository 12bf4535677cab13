"""Credentials for the cloud upstreams, on the request path's plane:

    sigv4.py     `SigV4Signer`: AWS Signature Version 4 header lines for Bedrock (pure)
    aws.py       `resolve_aws`: static keys, a shared-file profile or the environment (and
                 `resolve_aws_region`, a default region found the same way)
    google.py    `load_google_info` (service account, gcloud user, metadata server) and
                 `GoogleTokenSource`: a cached Authorization line, refreshed in the background
    registry.py  `CredentialRegistry`: the app's token sources and signers, shared by identity
                 across providers and config reloads

Why our own signer and token source rather than botocore and google-auth:
docs/decisions/0002-cloud-credentials.md. Importers use the names below, from this package.
"""

from llm_proxy.proxy.credentials.aws import (
    AwsCredentials,
    AwsCredentialsError,
    resolve_aws,
    resolve_aws_region,
)
from llm_proxy.proxy.credentials.google import (
    GoogleCredentialsError,
    GoogleInfo,
    GoogleTokenSource,
    load_google_info,
)
from llm_proxy.proxy.credentials.registry import CredentialRegistry
from llm_proxy.proxy.credentials.sigv4 import SigV4Signer

__all__ = [
    "AwsCredentials",
    "AwsCredentialsError",
    "CredentialRegistry",
    "GoogleCredentialsError",
    "GoogleInfo",
    "GoogleTokenSource",
    "SigV4Signer",
    "load_google_info",
    "resolve_aws",
    "resolve_aws_region",
]
