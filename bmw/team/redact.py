"""Keep secrets out of everything the doctor prints: config values, environment credentials, URL passwords."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

# Remote options (any DVC remote type) whose value is a credential.
SECRET_KEYS = frozenset({
    "access_key_id", "secret_access_key", "session_token", "sse_customer_key",  # s3
    "account_key", "sas_token", "connection_string", "client_secret",  # azure
    "gdrive_client_secret", "oss_key_id", "oss_key_secret",  # gdrive, oss
    "password", "passphrase", "token",  # http, webdav, ssh
})
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING")
MASK = "***"
# Shorter values would mask ordinary words; credentials are longer than this.
MIN_SECRET_LEN = 4
_PATTERNS = (  # (pattern, replacement)
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),  # AWS access key ids
    (re.compile(r"(://)[^/@\s:]*:[^/@\s]*@"), rf"\g<1>{MASK}@"),  # user:password@ in URLs
    (re.compile(r"(?i)((?:signature|credential|token)=)[^&\s\"']+"), rf"\g<1>{MASK}"),  # presigned-URL values
)


def secret_values(remotes: Mapping[str, Mapping], environ: Mapping[str, str] = os.environ) -> set[str]:
    """The credential values configured for any remote (at any config level) or in the environment."""
    values = {str(v) for conf in remotes.values() for k, v in conf.items() if k in SECRET_KEYS and v}
    values |= {environ[name] for name in SECRET_ENV if environ.get(name)}
    return {v for v in values if len(v) >= MIN_SECRET_LEN}


def redact(text: str, secrets: Iterable[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):  # longest first: one secret may contain another
        text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
