"""Keeping secrets out of text heatup writes: logs, error messages, stored rows.

``redact`` masks each known secret wherever it appears, in any letter case, and anything
shaped like a credential whatever its value: a bearer token, ``password=...``-style pairs,
the gateway session body's secret fields, an OpenAI-style key, the password of a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

MASK: Final = "***"
# Secrets shorter than this are not masked by value (they would mask ordinary words);
# heatup's configuration refuses empty secrets, and real ones are far longer.
MIN_SECRET_LENGTH: Final = 4

_PATTERNS: Final = (
    (re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+"), rf"\1\2{MASK}"),
    (
        re.compile(
            r"(?i)\b(api[_-]?key|token|password|passwd|pwd|secret|auth_string|"
            r"two_factor_password|api_hash)(\"?\s*[:=]\s*\"?)[^\s\"',;&}]+"
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), MASK),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+@"), rf"\1{MASK}@"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
