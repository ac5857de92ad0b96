"""Optional LLM judge for answers the rules cannot read (off unless configured).

VLMEvalKit falls back to an LLM that maps a free-text answer to an option letter when rule
matching fails; this does the same through any OpenAI-compatible ``/chat/completions``
endpoint (vLLM, llama.cpp server, OpenAI ...). It is used only for answers whose letter
:func:`plast_plugin.eval.extract.extract_choice` cannot determine. Settings, all environment
variables so that they reach the lmms-eval tasks unchanged:

- ``PLAST_JUDGE_URL``: base URL ending before ``/chat/completions``, e.g.
  ``http://127.0.0.1:8000/v1``. Unset or empty: no judge.
- ``PLAST_JUDGE_MODEL``: model name sent in the request (default ``gpt-4o-mini``).
- ``PLAST_JUDGE_API_KEY``: bearer token (falls back to ``OPENAI_API_KEY``; may be empty).
- ``PLAST_JUDGE_TIMEOUT``: seconds per request (default 60).

A judge failure (network, HTTP error, unreadable reply) leaves the answer unmatched (wrong)
and is logged; it never stops an evaluation.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from dataclasses import dataclass
from typing import Mapping

from plast_plugin.eval.extract import extract_choice

__all__ = ["JudgeConfig", "judge_choice", "JUDGE_PROMPT"]

log = logging.getLogger(__name__)

JUDGE_PROMPT = (
    "You match an answer to the options of a single-choice question. You get the question, "
    "its options and an answer; reply with the letter of the option the answer means. If the "
    "answer means none of the options, or several, reply Z. Reply with one uppercase letter "
    "and nothing else.\n\nQuestion: {question}\nOptions:\n{options}\nAnswer: {answer}\nYour reply:"
)


@dataclass(frozen=True)
class JudgeConfig:
    url: str
    model: str = "gpt-4o-mini"
    api_key: str = ""
    timeout: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "JudgeConfig | None":
        env = os.environ if environ is None else environ
        url = env.get("PLAST_JUDGE_URL", "").strip()
        if not url:
            return None
        return cls(
            url=url.rstrip("/"),
            model=env.get("PLAST_JUDGE_MODEL", "").strip() or cls.model,
            api_key=env.get("PLAST_JUDGE_API_KEY", env.get("OPENAI_API_KEY", "")),
            timeout=float(env.get("PLAST_JUDGE_TIMEOUT", "60") or 60),
        )


def judge_choice(question: str, options: Mapping[str, str | None], answer: str,
                 config: JudgeConfig) -> str | None:
    """Ask the judge which option `answer` means; None for 'Z', errors or unreadable replies."""
    present = {k: v for k, v in options.items() if v is not None and str(v).strip()}
    prompt = JUDGE_PROMPT.format(
        question=question, answer=answer,
        options="\n".join(f"{k}. {v}" for k, v in present.items()))
    body = json.dumps({
        "model": config.model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 8,
    }).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(f"{config.url}/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=config.timeout) as reply:
            payload = json.loads(reply.read().decode("utf-8"))
        content = payload["choices"][0]["message"]["content"]
    except Exception as exc:
        log.warning("LLM judge at %s failed (%s); the answer counts as unmatched", config.url, exc)
        return None
    return extract_choice(str(content), present)
