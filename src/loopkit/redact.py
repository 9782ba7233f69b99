"""Keep API keys out of everything loopkit writes or prints."""

from __future__ import annotations

import os
import re

# Provider key shapes (OpenAI/Anthropic style), in case a key arrives some other way than the env.
_KEY_PATTERN = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-]{12,}\b")
_MASK = "[REDACTED]"


def _secret_values(extra: tuple[str, ...]) -> list[str]:
    values = [v for k, v in os.environ.items() if (k.endswith("_API_KEY") or k.endswith("_KEY") or k.endswith("_TOKEN")) and len(v) >= 8]
    values += [v for v in extra if v and len(v) >= 8]
    return sorted(set(values), key=len, reverse=True)


def scrub(text: str | None, *secrets: str) -> str | None:
    """Text with every known key value and key-shaped token replaced by [REDACTED]."""
    if not text:
        return text
    for value in _secret_values(secrets):
        text = text.replace(value, _MASK)
    return _KEY_PATTERN.sub(_MASK, text)
