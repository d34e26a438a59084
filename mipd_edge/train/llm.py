"""A small client for OpenAI-compatible chat endpoints (a local LLM server, vLLM, llama.cpp).

Standard library only. Each request has a timeout; connection errors, timeouts, HTTP 429
and 5xx are retried with exponential back-off; anything else, or a reply without the
expected fields, is an ``LLMError`` the caller records and moves past.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Optional, Sequence

from ..errors import MipdEdgeError

log = logging.getLogger(__name__)


class LLMError(MipdEdgeError):
    """The endpoint failed after retries, or answered something that is not a chat reply."""


class ChatClient:
    def __init__(self, endpoint: str, model: str, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                 api_key: Optional[str] = None, temperature: float = 0.2):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self.api_key, self.temperature = api_key, temperature

    def complete(self, messages: Sequence[dict[str, str]]) -> str:
        body = json.dumps({"model": self.model, "messages": list(messages),
                           "temperature": self.temperature}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _content(json.loads(response.read().decode("utf-8")))
            except urllib.error.HTTPError as exc:
                last = exc
                if exc.code != 429 and exc.code < 500:
                    raise LLMError(f"{self.url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = exc
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise LLMError(f"{self.url}: the reply is not JSON ({exc})") from exc
            log.debug("LLM request failed (attempt %d): %s", attempt + 1, last)
        raise LLMError(f"{self.url}: no answer after {self.retries + 1} attempts ({last})")


def _content(reply: Any) -> str:
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"not a chat completion: {str(reply)[:200]}") from exc
    if not isinstance(content, str):
        raise LLMError(f"the message content is not text: {content!r:.200}")
    return content


def extract_json(text: str) -> Any:
    """The first JSON object in a reply (models like to wrap it in prose or code fences)."""
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:])
            return obj
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    raise LLMError(f"no JSON object in the reply: {text[:200]!r}")
