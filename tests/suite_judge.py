"""A scripted OpenAI-compatible judge for the suites' tests: deterministic replies from the request's content.

MT-Bench prompts get a rating from a hash of the prompt, in `[[x]]` form, some in the backup `[x]` form, and some
first as an unreadable reply (readable once re-asked). Arena-Hard prompts get one of the five verdicts likewise.
Some requests fail first with 429 or 503 (once per distinct request), as a busy endpoint does.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from westwind.demo.teacher import error_body, send_json

VERDICTS = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
UNREADABLE = "I cannot decide; both have merits."


def bucket(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def reply_for(messages: list[dict[str, str]]) -> str:
    first_ask = len(messages) <= 2
    content = messages[1]["content"] if len(messages) > 1 else messages[0]["content"]
    value = bucket(content)
    if first_ask and value % 5 == 0:
        return UNREADABLE
    if "[[A>>B]]" in messages[0]["content"]:  # the Arena-Hard system prompt lists the verdicts
        return f"My own answer first. My final verdict is: [[{VERDICTS[value % 5]}]]"
    rating = 1 + value % 10
    if value % 7 == 0:
        return f"Short explanation. Rating: [{rating}]"
    return f"Short explanation. Rating: [[{rating}]] (not [[99]])"


class ScriptedJudge:
    """`with ScriptedJudge() as judge:` serves on judge.base_url; `judge.requests` counts what it answered."""

    def __init__(self, delay: float = 0.0, faults: bool = True):
        self.delay, self.faults = delay, faults
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.requests = {"ok": 0, "429": 0, "503": 0}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def fault(self, body: dict[str, Any]) -> int | None:
        """429 for one request in 6, 503 for one in 11, the first time each distinct request comes."""
        text = json.dumps(body["messages"], sort_keys=True)
        value = bucket("fault" + text)
        with self.lock:
            if not self.faults or text in self.seen:
                return None
            self.seen.add(text)
        return 429 if value % 6 == 0 else 503 if value % 11 == 0 else None

    def handler(self):
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                status = judge.fault(body)
                if status is not None:
                    with judge.lock:
                        judge.requests[str(status)] += 1
                    return send_json(self, status, error_body("busy", "rate_limit"))
                time.sleep(judge.delay)
                text = reply_for(body["messages"])
                with judge.lock:
                    judge.requests["ok"] += 1
                message = {"role": "assistant", "content": text}
                send_json(
                    self,
                    200,
                    {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

            def log_message(self, *args) -> None:
                pass

        return Handler

    def __enter__(self) -> ScriptedJudge:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def judge_endpoint(base_url: str) -> dict[str, Any]:
    return {
        "backend": "openai",
        "model": "scripted-judge",
        "base_url": base_url,
        "concurrency": 16,
        "max_retries": 3,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "max_reasks": 1,
    }


if __name__ == "__main__":  # a judge for manual runs: python tests/suite_judge.py
    with ScriptedJudge(delay=float(os.environ.get("SUITE_JUDGE_DELAY", "0"))) as served:
        print(served.base_url, flush=True)
        threading.Event().wait()
