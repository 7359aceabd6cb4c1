"""IC Light's ``args`` in generation requests, put in the form the WebUIs take, or refused.

The WebUIs' ``/sdapi/v1/txt2img`` and ``img2img`` take a script's ``args`` as a list. A
bare dict there (``{"args": {"enable": true, ...}}``) answers a 500 ``KeyError: 0`` from
the WebUI's own argument handling, before any script runs, and a ``null`` or a number a
500 ``TypeError``; agent-scheduler's queue routes map a bare dict by the parameter names of
``process()``, which takes ``*args`` here, so the task ran with IC Light off. This pure
ASGI middleware reads those requests first: IC Light's bare dict becomes the one-dict
list the WebUIs pass on as is (``[{...}]``, the API's named form), and ``args`` of any
other type is answered with a 422 naming it. Other scripts' entries are left alone.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Awaitable, Callable, MutableMapping

from ..errors import ICLightError, describe_value

logger = logging.getLogger("iclight.api_request_args")

SCRIPT_TITLE = "IC Light"
GENERATION_PATHS = (
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/agent-scheduler/v1/queue/txt2img",
    "/agent-scheduler/v1/queue/img2img",
)
"""Routes whose body carries ``alwayson_scripts`` (matched at the end of the path, so a
WebUI served under a sub-path matches too)."""

_NAMES_SCRIPT = re.compile(rb'"' + re.escape(SCRIPT_TITLE.encode()) + rb'"', re.IGNORECASE)
"""IC Light's key in a body, as JSON writes it; bodies without it are passed on unparsed
(a generation request carries megabytes of base64, which the WebUI parses itself)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def normalise_payload(payload: Any) -> bool:
    """Put IC Light's ``args`` in ``payload`` (a decoded JSON body) in list form, in place.

    Returns whether anything changed. Raises ICLightError naming the field when ``args``
    (or IC Light's entry itself) is neither a list nor a dict. The script's title is
    matched without case, as the WebUIs do.
    """
    scripts = payload.get("alwayson_scripts") if isinstance(payload, dict) else None
    if not isinstance(scripts, dict):
        return False
    changed = False
    for title, entry in scripts.items():
        if not isinstance(title, str) or title.lower() != SCRIPT_TITLE.lower():
            continue
        field = f"alwayson_scripts.{title}"
        if not isinstance(entry, dict):
            raise ICLightError.expected(field, 'an object with "args"', entry)
        if "args" not in entry:
            continue
        args = entry["args"]
        if isinstance(args, dict):
            entry["args"] = [args]
            changed = True
        elif not isinstance(args, list):
            raise ICLightError(
                f"{field}.args",
                f"expected a list of the 13 values or an object of them by name, got {describe_value(args)}",
            )
    return changed


def _error_body(error: ICLightError) -> bytes:
    """The WebUIs' own error body (``modules/api/api.py``, ``handle_exception``), where the
    message is under ``errors``; ``detail`` carries it too, as FastAPI's answers do."""
    message = str(error)
    return json.dumps({"error": type(error).__name__, "detail": message, "body": "", "errors": message}).encode()


class ScriptArgsMiddleware:
    """ASGI middleware applying :func:`normalise_payload` to generation requests' bodies."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not str(scope.get("path", "")).endswith(GENERATION_PATHS):
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message.get("type") != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay(bytes(body), receive, message), send)
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
        if not _NAMES_SCRIPT.search(body):  # most requests: no IC Light entry, nothing to parse
            await self.app(scope, _replay(bytes(body), receive), send)
            return
        try:
            payload = json.loads(body)
            changed = normalise_payload(payload)
        except ICLightError as error:
            logger.info("IC Light refused a request's args: %s", error)
            await _answer(send, 422, _error_body(error))
            return
        except ValueError:  # not JSON: the WebUI answers that itself
            changed = False
        if changed:
            body = bytearray(json.dumps(payload).encode())
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, then: Receive, first: Message | None = None) -> Receive:
    """A ``receive`` that gives ``body`` whole, then ``first`` if given, then ``then``'s messages."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *([first] if first else [])]

    async def receive() -> Message:
        return pending.pop(0) if pending else await then()

    return receive


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def install(app: Any) -> bool:
    """Add the middleware to a started FastAPI/Starlette ``app`` once; returns whether it was added.

    The WebUIs call ``on_app_started`` once the app serves, when Starlette no longer takes
    new middleware; resetting the built stack lets it be rebuilt, with this one, on the
    next request, as the WebUIs' own ``setup_middleware`` does.
    """
    if any(getattr(m, "cls", None) is ScriptArgsMiddleware for m in getattr(app, "user_middleware", [])):
        return False
    app.middleware_stack = None
    app.add_middleware(ScriptArgsMiddleware)
    return True
