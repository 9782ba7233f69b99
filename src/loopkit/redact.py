"""Keep API keys out of everything loopkit writes or prints (SPEC.md §3: keys are never written to the
ledger or printed).

`scrub(text)` replaces, with [REDACTED]:
- the value of every environment variable whose name marks it as a secret (`OPENAI_API_KEY`,
  `HF_TOKEN`, `AWS_SECRET_ACCESS_KEY`, `DB_PASSWORD`, `MY_CREDENTIAL`, ...), read at call time;
- every value passed to `register_secret` (a key read from a spec's `api_key_env`, whatever its name)
  or given as an extra argument;
- tokens shaped like provider keys even when loopkit never saw them (OpenAI/Anthropic `sk-...`,
  `Bearer ...`, Google `AIza...`, GitHub, Hugging Face, Slack, AWS access key IDs).

`safe_text(text)` is the other half of making a text fit to write: a lone surrogate written as its escape.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

MASK = "[REDACTED]"
_SURROGATE = re.compile("[\ud800-\udfff]")

# Name parts (split on "_") that mark an environment variable's value as a secret.
_SECRET_NAME_PARTS = frozenset({"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "PAT"})
_MIN_SECRET_LENGTH = 8

# Provider key shapes, in case a key arrives some other way than the environment (e.g. echoed back by a
# server, or pasted into a spec).
_KEY_PATTERN = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{12,}"  # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), Stripe-like
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API keys
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}"  # GitHub
    r"|\bhf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key IDs
)
# "Authorization: Bearer <token>" / "x-api-key: <token>" as they appear in logged requests.
_API_KEY_SET = r"api[_-]?key[\"']?\s*[:=]"  # "api_key=", "Api-Key\": " …: the header pattern's third form
_HEADER_PATTERN = re.compile(rf"(?i)\b(bearer|x-api-key:?|{_API_KEY_SET}\s*[\"']?)\s*([A-Za-z0-9_\-\.=]{{16,}})")

# Substrings without which those patterns cannot match: testing for them is several times cheaper than
# running the patterns, and almost no text holds them.
def _may_hold_key(text: str) -> bool:
    # sk-/pk-/rk-, gh?_, github_pat_, hf_, xox?-, AIza, AKIA/ASIA; spelt out: a loop costs more than the test
    return ("k-" in text or "gh" in text or "_pat_" in text or "hf_" in text or "xox" in text or "AIza" in text
            or "AKIA" in text or "ASIA" in text)


# The header pattern's third form needs more than "api": its whole lead-in, lower-cased. A run's state names
# `api_base` and `api_key_env` in every row, so "api" alone sent nearly every state (about 0.5 KB) through
# the case-blind pattern: 17 µs of the writer's CPU per step.
_API_KEY_LEAD = re.compile(_API_KEY_SET)


def _may_hold_header(text: str) -> bool:
    folded = text.lower()
    if not text.isascii():  # `re` matches "i" to a dotless "ı" and to "İ", which lowers to "i" and a combining dot
        folded = folded.replace("ı", "i").replace("\u0307", "")
    if "bearer" in folded or "x-api-key" in folded:
        return True
    at = folded.find("api")
    while at >= 0:
        if _API_KEY_LEAD.match(folded, at):
            return True
        at = folded.find("api", at + 3)
    return False


_registered: set[str] = set()
_lock = threading.Lock()
# The last scrubber built, with what it was built from: (environment, how many secrets were registered
# (they are only ever added), extra secrets, scrubber). The environment is compared as the raw mapping
# os.environ keeps (one C-level dict comparison), so a variable set or changed since is seen without
# rescanning every name on every call.
_last: tuple[dict[Any, Any], int, tuple[str, ...], Callable[[str | None], str | None]] | None = None


def is_secret_name(name: str) -> bool:
    """True for environment variable names that hold secrets by convention (`*_API_KEY`, `*_TOKEN`, ...)."""
    return any(part in _SECRET_NAME_PARTS for part in name.upper().split("_"))


def looks_like_key(text: str) -> bool:
    """True when `text` holds a token shaped like a provider key (`sk-...`, `AIza...`, ...)."""
    return _may_hold_key(text) and _KEY_PATTERN.search(text) is not None


def register_secret(value: str | None) -> None:
    """Remember a secret (e.g. the key a spec's `api_key_env` names) so every later `scrub` hides it."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def _secret_values(extra: tuple[str, ...]) -> list[str]:
    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LENGTH}
    with _lock:
        values |= _registered
    values |= {v for v in extra if v and len(v) >= _MIN_SECRET_LENGTH}
    # Also the forms a value takes inside JSON or a URL, when they differ from the value itself.
    variants = set()
    for v in values:
        for form in (v.replace("\\", "\\\\").replace('"', '\\"'), quote(v, safe="")):
            if form != v:
                variants.add(form)
    return sorted(values | variants, key=len, reverse=True)


def scrubber(*secrets: str) -> Callable[[str | None], str | None]:
    """A `scrub` for many texts at once: the secret values are gathered once (the ledger builds one per
    write, the engine one per call) and matched by one compiled pattern, longest first. Rebuilt only
    when the environment, the registered secrets or `secrets` changed since the last one."""
    global _last
    environ = getattr(os.environ, "_data", None)
    registered = len(_registered)
    last = _last
    if environ is not None and last is not None and last[1] == registered and last[2] == secrets and last[0] == environ:
        return last[3]
    clean = _build_scrubber(secrets)
    if environ is not None:
        _last = (dict(environ), registered, secrets, clean)
    return clean


def _build_scrubber(secrets: tuple[str, ...]) -> Callable[[str | None], str | None]:
    values = _secret_values(secrets)
    literal = re.compile("|".join(map(re.escape, values))) if values else None

    def clean(text: str | None) -> str | None:
        if not text or len(text) < _MIN_SECRET_LENGTH:  # too short to hold a secret or a key's shape
            return text
        if literal is not None:
            text = literal.sub(MASK, text)
        if _may_hold_key(text):
            text = _KEY_PATTERN.sub(MASK, text)
        return _HEADER_PATTERN.sub(_mask_header, text) if _may_hold_header(text) else text

    return clean


def scrub(text: str | None, *secrets: str) -> str | None:
    """`text` with every known key value and key-shaped token replaced by [REDACTED]."""
    return scrubber(*secrets)(text) if text else text


def scrub_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages with their texts scrubbed: what goes to a model carries no key (a checker's output
    quoting one becomes feedback, and a provider must never see it)."""
    clean = scrubber()
    out = []
    for m in messages:
        content = m.get("content")
        cleaned = clean(content) if isinstance(content, str) else content
        out.append(m if cleaned is content else {**m, "content": cleaned})  # a message without a key is not copied
    return out


def _mask_header(match: re.Match[str]) -> str:
    token = match.group(2)
    looks_random = any(c.isdigit() for c in token) and any(c.isalpha() for c in token)
    if not looks_random:
        return match.group(0)
    prefix = match.group(1)
    return prefix + (" " if prefix[-1].isalpha() else "") + MASK


def safe_text(text: str) -> str:
    """`text` with each lone UTF-16 surrogate (e.g. "\\ud800" from a model's JSON reply) written as the
    escape `\\ud800`: such a string cannot be encoded as UTF-8, so the ledger, a child process's
    environment or a request body would fail on it after the call that produced it was paid."""
    if text.isascii() or _SURROGATE.search(text) is None:  # isascii reads a flag: most texts end here
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
