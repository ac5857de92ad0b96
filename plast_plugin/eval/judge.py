"""Optional LLM judge for answers the rules cannot read, as VLMEvalKit falls back to one: any
OpenAI-compatible ``/chat/completions`` endpoint maps a free-text answer to an option letter, only
where :func:`plast_plugin.eval.extract.extract_choice` cannot. Settings are environment variables
(README step 5), so that they reach the lmms-eval tasks unchanged; ``PLAST_JUDGE_TOTAL_TIMEOUT``
bounds all requests of one process together, ``PLAST_JUDGE_FAILURE_LOG`` (set by ``plast eval``)
collects failures as JSONL.

Security: a key, or a password in the URL, never goes over plain http except to localhost, no
redirect is followed (the new host would get the request), ``user:password@`` is redacted from
everything logged, and an ``OPENAI_API_KEY`` meant for another service is never sent. A judge
failure leaves the answer unmatched and is counted and logged, never stopping an evaluation; a bad
configuration (``PlastError``) stops it before any request.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from plast_plugin.errors import PlastError
from plast_plugin.eval.extract import extract_choice

log = logging.getLogger(__name__)

JUDGE_PROMPT = (
    "You match an answer to the options of a single-choice question. You get the question, "
    "its options and an answer; reply with the letter of the option the answer means. If the "
    "answer means none of the options, or several, reply Z. Reply with one uppercase letter "
    "and nothing else.\n\nQuestion: {question}\nOptions:\n{options}\nAnswer: {answer}\nYour reply:"
)


def redact_url(text: str) -> str:
    """``https://user:secret@host/v1`` -> ``https://***@host/v1``, in a URL or in a message quoting one."""
    return re.sub(r"//[^/\s]*@", "//***@", text)


def _is_local(host: str) -> bool:
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False


def _number(env: Mapping[str, str], name: str, default: float, kind=float, minimum: float = 0.0):
    text = env.get(name, "").strip()
    if not text:
        return kind(default)
    try:
        value = kind(text)
        if value >= minimum:  # False for NaN
            return value
    except ValueError:
        pass
    raise PlastError(f"{name}={text!r} is not a {'whole ' if kind is int else ''}number >= {minimum:g}; "
                     f"unset it for the default {default}")


@dataclass(frozen=True)
class JudgeConfig:
    url: str
    model: str = "gpt-4o-mini"
    api_key: str = ""
    timeout: float = 60.0
    retries: int = 2
    total_timeout: float = 1800.0

    def __post_init__(self):
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PlastError(f"PLAST_JUDGE_URL {redact_url(self.url)!r}: use http(s)://host[:port]/path, "
                                   f"e.g. http://127.0.0.1:8000/v1")
        if (self.api_key or parts.password) and parts.scheme == "http" and not _is_local(parts.hostname):
            what = "PLAST_JUDGE_API_KEY" if self.api_key else "the URL's password"
            raise PlastError(
                f"{what} would be sent in clear text to {parts.hostname} (PLAST_JUDGE_URL "
                f"{redact_url(self.url)}): use an https:// URL (plain http only for localhost)")
        if self.timeout <= 0:
            raise PlastError(f"PLAST_JUDGE_TIMEOUT={self.timeout}: must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "JudgeConfig | None":
        env = os.environ if environ is None else environ
        url = env.get("PLAST_JUDGE_URL", "").strip()
        if not url:
            return None
        return cls(
            url=url.rstrip("/"),
            model=env.get("PLAST_JUDGE_MODEL", "").strip() or cls.model,
            api_key=env.get("PLAST_JUDGE_API_KEY", ""),
            timeout=_number(env, "PLAST_JUDGE_TIMEOUT", 60.0, minimum=0.001),
            retries=_number(env, "PLAST_JUDGE_RETRIES", 2, kind=int),
            total_timeout=_number(env, "PLAST_JUDGE_TOTAL_TIMEOUT", 1800.0),
        )


_LOCK = threading.Lock()
_STATE = {"spent": 0.0, "failures": 0}  # judge time spent and failures, in this process


def failure_count() -> int:
    """Judge failures (answers left unmatched because the judge could not answer) in this process."""
    return _STATE["failures"]


def _record_failure(config: JudgeConfig, reason: str, answer: str) -> None:
    with _LOCK:
        _STATE["failures"] += 1
    reason = redact_url(reason)  # requests' messages quote the URL as given
    log.warning("LLM judge at %s failed (%s); the answer counts as unmatched", redact_url(config.url), reason)
    path = os.environ.get("PLAST_JUDGE_FAILURE_LOG")
    if path:
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"url": redact_url(config.url), "reason": reason,
                                         "answer": answer[:200]}, ensure_ascii=False) + "\n")
        except OSError as err:  # the count and the log line above still report it
            log.warning("could not append to PLAST_JUDGE_FAILURE_LOG %s: %s", path, err)


def _bearer(key: str):
    # As requests' auth (not a header), so neither ~/.netrc nor user:password@ in the URL replaces it.
    def add(request):
        request.headers["Authorization"] = f"Bearer {key}"
        return request
    return add


def _post(config: JudgeConfig, body: dict) -> str:
    """The reply's content. urllib3's Retry repeats connection errors and transient statuses with
    exponential backoff (not a server's Retry-After, which could outlast the time budget); no
    redirect is followed (the new host would get the request; set PLAST_JUDGE_URL to the final address)."""
    left = config.total_timeout - _STATE["spent"]
    if left <= 0:
        raise TimeoutError(f"judge time budget of {config.total_timeout:g} s (PLAST_JUDGE_TOTAL_TIMEOUT) spent")
    retry = Retry(total=config.retries, backoff_factor=1.0, status_forcelist=(408, 425, 429, 500, 502, 503, 504),
                  allowed_methods=None, raise_on_status=False, respect_retry_after_header=False)
    started = time.monotonic()
    try:
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=retry))
            session.mount("https://", HTTPAdapter(max_retries=retry))
            reply = session.post(f"{config.url}/chat/completions", json=body, timeout=min(config.timeout, left),
                                 allow_redirects=False, auth=_bearer(config.api_key) if config.api_key else None)
    finally:
        with _LOCK:
            _STATE["spent"] += time.monotonic() - started
    if reply.is_redirect:
        raise requests.HTTPError(f"{reply.status_code} redirect to {redact_url(reply.headers.get('Location', ''))} "
                                 f"not followed (credentials are never forwarded; set PLAST_JUDGE_URL to the final "
                                 f"address)")
    reply.raise_for_status()
    return str(reply.json()["choices"][0]["message"]["content"])


def judge_choice(question: str, options: Mapping[str, str | None], answer: str,
                 config: JudgeConfig) -> str | None:
    """Ask the judge which option `answer` means; None for 'Z', errors or unreadable replies."""
    present = {k: v for k, v in options.items() if v is not None and str(v).strip()}
    prompt = JUDGE_PROMPT.format(
        question=question, answer=answer,
        options="\n".join(f"{k}. {v}" for k, v in present.items()))
    body = {"model": config.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": 8}
    try:
        content = _post(config, body)
    except Exception as exc:  # never stop an evaluation: count, log, score as unmatched
        _record_failure(config, f"{type(exc).__name__}: {exc}", answer)
        return None
    return extract_choice(content, present)
