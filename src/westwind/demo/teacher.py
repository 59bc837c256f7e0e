"""The CPU demo's teacher behind an OpenAI-compatible chat endpoint, for the distill stage's wire path.

    python -m westwind.demo.teacher --host 127.0.0.1 --port 8765

It is an oracle program, not a language model: it reads the last user turn of a chat request as a demo task
(`westwind.demo.tasks.problem_from_prompt`) and replies with the worked answer the shipped dSFT file would
hold, step by step or in one go, drawn reproducibly from the request's `seed` and the prompt with the shipped
file's share of one-go answers (`QUICK_SHARE`). What it demonstrates is the protocol and the stage (a recipe
distilling its dSFT dialogues from a served teacher), not a teacher's quality. It serves
`POST /v1/chat/completions` (`n`, `max_tokens` / `max_completion_tokens`, `stop`; a token is a character,
as in the demo's character-level student; a reply over `max_tokens` is cut, with finish_reason `length`) and
`GET /v1/models`. A prompt that is not a demo task, or a malformed request, gets a 400 with an OpenAI-style
error body.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from westwind.demo.tasks import QUICK_SHARE, problem_from_prompt

MODEL = "westwind-demo-teacher"
DEFAULT_PORT = 8765


class BadRequest(ValueError):
    """The request cannot be answered: the server replies 400 with this message."""


def style_for(prompt: str, seed: int | None) -> str:
    """The answer style of a (seed, prompt) pair: `quick` for a QUICK_SHARE of pairs, else `steps`; the same
    pair always draws the same style."""
    draw = random.Random(json.dumps([seed, prompt])).random()
    return "quick" if draw < QUICK_SHARE else "steps"


def last_user_turn(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users or not isinstance(users[-1].get("content"), str):
        raise BadRequest("`messages` has no user turn with text content")
    return users[-1]["content"]


def cut(text: str, max_tokens: int | None, stop: list[str]) -> tuple[str, str]:
    """The reply up to the first stop string, then at most `max_tokens` characters; and its finish_reason."""
    for marker in stop:
        if marker and marker in text:
            text = text[: text.index(marker)]
    if max_tokens is not None and len(text) > max_tokens:
        return text[:max_tokens], "length"
    return text, "stop"


def positive_int(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequest(f"`{name}` must be a positive integer")
        return value
    return None


def stop_strings(value: Any) -> list[str]:
    stop = [value] if isinstance(value, str) else value or []
    if not isinstance(stop, list) or not all(isinstance(marker, str) for marker in stop):
        raise BadRequest("`stop` must be a string or a list of strings")
    return stop


def chat_completion(body: Any) -> dict[str, Any]:
    """The response body for a chat completion request body; BadRequest when it cannot be answered."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    prompt = last_user_turn(body.get("messages"))
    problem = problem_from_prompt(prompt)
    if problem is None:
        raise BadRequest(f"not a demo task (see westwind.demo.tasks): {prompt[:200]!r}")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRequest("`seed` must be an integer")
    n = positive_int(body, "n") or 1
    max_tokens = positive_int(body, "max_completion_tokens", "max_tokens")
    stop = stop_strings(body.get("stop"))
    choices, used = [], 0
    for index in range(n):
        draw_seed = None if seed is None else seed + index
        text, finish_reason = cut(problem.answer(style_for(prompt, draw_seed)), max_tokens, stop)
        used += len(text)
        message = {"role": "assistant", "content": text}
        choices.append({"index": index, "message": message, "finish_reason": finish_reason})
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or MODEL,
        "choices": choices,
        "usage": {
            "prompt_tokens": len(prompt),
            "completion_tokens": used,
            "total_tokens": len(prompt) + used,
        },
    }


def models_list() -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "westwind"}],
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            return self.reply(200, models_list())
        self.reply(404, error_body(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self.reply(404, error_body(f"no route POST {self.path}", "not_found"))
        try:
            length = int(self.headers.get("content-length") or 0)
            self.reply(200, chat_completion(json.loads(self.rfile.read(length) or b"null")))
        except (BadRequest, ValueError) as error:  # json.JSONDecodeError is a ValueError
            self.reply(400, error_body(str(error), "invalid_request_error"))

    def reply(self, status: int, value: dict[str, Any]) -> None:
        send_json(self, status, value)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # thousands of requests per demo run: no access log


def send_json(handler: BaseHTTPRequestHandler, status: int, value: dict[str, Any]) -> None:
    """Answer an http.server request with a JSON body; a client that hung up is not an error."""
    payload = json.dumps(value).encode()
    try:
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
    except OSError:
        pass  # the client hung up (a killed run)


def error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def make_server(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """The server, bound (port 0: a free one, see `server_port`) but not yet serving."""
    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m westwind.demo.teacher", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        server = make_server(args.host, args.port)
    except OSError as error:
        print(f"error: {args.host}:{args.port}: cannot listen: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"demo teacher on http://{args.host}:{server.server_port}/v1 (model {MODEL})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
