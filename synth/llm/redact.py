"""Keep keys out of everything synth writes or says: error texts are scrubbed, URLs hold no credentials.

A gateway may quote the request's `Authorization` header (the key) in a 400/403/5xx body, and
that body becomes an error message, a `failures` record, a log line. `Redactor` replaces, in any
text, every configured key (the value of each endpoint's `api_key_env` in the environment the
client was given) and anything shaped like a credential
(`Bearer ...`, `sk-...`, `api_key=...`, `Authorization: ...`, `scheme://user:password@`) with
`[redacted]`:

    redact = Redactor.for_endpoints(endpoints, env)
    reason = redact(str(exc))

The client applies it to every error text it builds (`ChatClient.redact` is its instance); a
caller that records texts of its own (e.g. a stage's failure reason) applies the same instance.

`url_credentials_problem` refuses a base URL that carries credentials (`http://user:KEY@host/v1`,
`?api_key=...`): such a URL would be written into run.json and shown in every error that names the
endpoint. Keys come from the environment (`api_key_env`), never from a URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

if TYPE_CHECKING:
    from synth.llm.presets import EndpointConfig

REDACTED = "[redacted]"

MIN_SECRET_LENGTH = 4
"""A configured key shorter than this is not scrubbed by value (it would wreck every text it is
scrubbed from, and no real provider issues one); the credential patterns still apply."""

_SECRET_NAME = re.compile(r"key|secret|token|password|passwd|credential|signature|auth", re.IGNORECASE)
# A credential after a scheme word: long, or holding a digit ("Basic authentication" is prose).
_TOKEN = r"(?:(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{8,}|[A-Za-z0-9._~+/=-]{20,})"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # user:password@ in any URL
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*:[^/\s@]*@"), rf"\1{REDACTED}@"),
    # Authorization / Proxy-Authorization header values, with or without a scheme word
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;}]+"),
        rf"\1{REDACTED}",
    ),
    # a bearer/basic/token credential anywhere else
    (re.compile(rf"(?i)\b(bearer|basic)(\s+){_TOKEN}"), rf"\1\2{REDACTED}"),
    # key=value, "api_key": "value", x-api-key: value, ?access_token=value ...
    (
        re.compile(
            r"(?i)\b((?:x-)?(?:api[-_]?key|access[-_]?token|auth[-_]?token|secret[-_]?key|client[-_]?secret|"
            r"password|passwd|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]{4,}"
        ),
        rf"\1{REDACTED}",
    ),
    # provider key shapes: sk-..., sk-proj-..., sk-ant-..., and similar prefixed keys
    (re.compile(r"\b(?:sk|pk|rk|ak)-[A-Za-z0-9_-]{8,}"), REDACTED),
)


class Redactor:
    """Scrubs the given secrets, and anything shaped like a credential, from a text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            # As sent, and as a JSON body or a URL would quote it back.
            variants.update({secret, json.dumps(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)})
        # Longest first, so a key containing another key is replaced whole.
        self._secrets = sorted(variants, key=len, reverse=True)

    @classmethod
    def for_endpoints(cls, endpoints: Iterable[EndpointConfig], env: Mapping[str, str]) -> Redactor:
        """The keys these endpoints read from `env` (the only keys the client ever sends)."""
        return cls(env[ep.api_key_env] for ep in endpoints if ep.api_key_env and env.get(ep.api_key_env))

    def contains_secret(self, text: str) -> bool:
        """Whether a configured key (not merely a credential-shaped string) occurs in `text`."""
        return any(secret in text for secret in self._secrets)

    def scrub_secrets(self, text: str) -> str:
        """Only the configured keys replaced: for model answers, where a credential-shaped string may
        be legitimate data but a configured key never is."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(self, text: str) -> str:
        """`text` with every configured key and every credential-shaped string replaced."""
        text = self.scrub_secrets(text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` scrubbed of `secrets` and of anything shaped like a credential."""
    return Redactor(secrets)(text)


def url_credentials_problem(url: str) -> str | None:
    """Why `url` must not be used as a base URL (it carries credentials), or None when it is fine.

    The reason shows the URL without its credentials, so it can be printed."""
    try:
        parts = urlsplit(url)
        has_userinfo = bool(parts.username or parts.password) or "@" in parts.netloc
    except ValueError:  # e.g. an invalid port or bracketed host: not ours to judge here
        return None
    secret_query = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_NAME.search(name)]
    if not has_userinfo and not secret_query:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    where = "user:password@ in the URL" if has_userinfo else f"?{secret_query[0]}= in the query"
    return (
        f"{shown}: credentials do not belong in a base URL ({where}; it would be recorded in run.json "
        "and shown in errors): put the key in an environment variable and name it with api_key_env"
    )


def safe_url(url: str) -> str:
    """`url` as it may be shown: credentials and query removed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return Redactor()(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
