"""HTTP/REST front end of the KServe v2 / Triton protocol on Python's ``http.server``.

Endpoints (``{m}`` = ``/v2/models/NAME`` or ``/v2/models/NAME/versions/1``):

=========================  ======  ==================================================
path                       method  answer
=========================  ======  ==================================================
``/v2/health/live``        GET     200 while the process serves
``/v2/health/ready``       GET     200 while it accepts inference requests, else 503
``/v2``                    GET     server metadata (name, version, extensions)
``{m}``                    GET     model metadata (inputs, outputs)
``{m}/ready``              GET     200 if the model is ready
``{m}/config``             GET     Triton model configuration (``get_model_config``)
``{m}/stats``              GET     Triton statistics extension (``/v2/models/stats``: all)
``{m}/infer``              POST    inference
=========================  ======  ==================================================

Inference requests are JSON, or JSON followed by binary tensors (binary tensor data
extension: the ``Inference-Header-Content-Length`` header gives the JSON length, each
binary input has ``parameters.binary_data_size``). Outputs are binary when the request sets
``parameters.binary_data_output`` or the output's ``parameters.binary_data``, else JSON
``data``. Request bodies may be gzip/deflate compressed (``Content-Encoding``); responses
are compressed when ``Accept-Encoding`` asks for it. Errors are ``{"error": "..."}`` with
HTTP 400 (bad request), 404 (unknown model or path), 405, 411, 413 (body over the limit),
503 (shutting down) or 500.

One thread per connection (keep-alive, HTTP/1.1); the model call itself is serialised by
the dynamic batcher, so threads only decode, validate, encode and wait. Stopping closes the
listening socket, waits for running requests, then closes idle keep-alive connections.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from caloreco.errors import CalorecoError, ConfigError, InvalidDataError
from caloreco.serving.protocol import (MODEL_VERSION, RequestTooLargeError, ServerUnavailableError,
                                       UnknownModelError, decode_tensor, requested_outputs, server_metadata,
                                       wire_name)
from caloreco.serving.served_model import ModelRepository, ServedModel

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"


#: Bodies up to this multiple of the limit are read and discarded before the 413 answer
#: (a client still sending would otherwise see a reset connection instead); larger ones are
#: answered at once and the connection closed.
_DISCARD_FACTOR = 2


class HTTPError(Exception):
    """An HTTP status with an error message for the JSON body; ``body_read`` tells whether
    the request body was consumed (else the connection must close)."""

    def __init__(self, status: int, message: str, body_read: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.body_read = body_read


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, UnknownModelError):
        return 404
    if isinstance(exc, ServerUnavailableError):
        return 503
    if isinstance(exc, CalorecoError):
        return 400
    return 500


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: many clients may connect at once

    def __init__(self, front: "HTTPFrontEnd", address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.front = front
        super().__init__(address, _Handler)


class HTTPFrontEnd:
    """The REST endpoints on ``host:port`` (0 = a free port, see :attr:`port`).

    Args:
        repo: the served models.
        ready: set while the server accepts inference requests.
        max_body_bytes: largest request body, also after decompression (more: HTTP 413).
    """

    def __init__(self, repo: ModelRepository, ready: threading.Event, host: str = "127.0.0.1",
                 port: int = 8000, *, max_body_bytes: int = 128 << 20) -> None:
        self.repo, self.ready = repo, ready
        self.host, self.requested_port = host, port
        self.max_body_bytes = max_body_bytes
        self.port: int | None = None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._in_flight = 0
        self._draining = False
        self._connections: set[socket.socket] = set()

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "HTTPFrontEnd":
        """Bind and serve in a background thread."""
        try:
            httpd = _Server(self, (self.host, self.requested_port))
        except OSError as exc:
            raise ConfigError(f"cannot bind the HTTP server to {self.host}:{self.requested_port}: {exc}") from None
        self._httpd, self.port = httpd, int(httpd.server_address[1])
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="caloreco-http", daemon=True)
        self._thread.start()
        return self

    def stop_accepting(self) -> None:
        """Close the listening socket; requests on open connections get 503 from now on."""
        with self._cond:
            self._draining = True
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no request is running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)

    def close_connections(self) -> None:
        """Shut the (idle) keep-alive connections down, ending their threads."""
        with self._cond:
            conns = list(self._connections)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ------------------------------------------------------------------ bookkeeping
    def _enter(self) -> bool:
        with self._cond:
            if self._draining:
                return False
            self._in_flight += 1
            return True

    def _exit(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def _connection(self, sock: socket.socket, opened: bool) -> None:
        with self._cond:
            (self._connections.add if opened else self._connections.discard)(sock)

    # ------------------------------------------------------------------ routing
    def route(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of one request."""
        parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
        if not parts or parts[0] != "v2":
            raise HTTPError(404, f"unknown endpoint '{path}'; the v2 protocol lives under /v2")
        rest = parts[1:]
        if rest == []:
            _method(method, "GET")
            return _json(200, server_metadata())
        if rest[0] == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
            _method(method, "GET")
            ok = rest[1] == "live" or self.ready.is_set()
            return (200, {}, b"") if ok else _json(503, {"error": "the server is not ready"})
        if rest == ["models", "stats"]:
            _method(method, "GET")
            return _json(200, {"model_stats": [m.statistics() for m in self.repo]})
        if rest[0] != "models" or len(rest) < 2:
            raise HTTPError(404, f"unknown endpoint '{path}'")
        name, rest = rest[1], rest[2:]
        version = ""
        if len(rest) >= 2 and rest[0] == "versions":
            version, rest = rest[1], rest[2:]
        model = self.repo.get(name, version)
        action = rest[0] if len(rest) == 1 else None if not rest else "?"
        if action is None:
            _method(method, "GET")
            return _json(200, model.metadata())
        if action == "ready":
            _method(method, "GET")
            return (200, {}, b"") if self.ready.is_set() else _json(503, {"error": f"model '{name}' is not ready"})
        if action == "config":
            _method(method, "GET")
            return _json(200, model.config())
        if action == "stats":
            _method(method, "GET")
            return _json(200, {"model_stats": [model.statistics()]})
        if action == "infer":
            _method(method, "POST")
            return _infer(model, headers, body, self.max_body_bytes)
        raise HTTPError(404, f"unknown endpoint '{path}'")


def _method(method: str, allowed: str) -> None:
    if method != allowed:
        raise HTTPError(405, f"method {method} not allowed here; use {allowed}")


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    if not encoding or encoding.lower() == "identity":
        return body
    enc = encoding.lower()
    if enc not in ("gzip", "deflate"):
        raise HTTPError(400, f"Content-Encoding '{encoding}' is not supported (use gzip or deflate)")
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS if enc == "gzip" else zlib.MAX_WBITS)
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HTTPError(400, f"request body is not valid {enc} data ({exc})") from None
    if len(out) > limit:
        raise HTTPError(413, f"decompressed request body exceeds the limit of {limit} bytes")
    return out


def _infer(model: ServedModel, headers: Any, body: bytes, limit: int) -> tuple[int, dict[str, str], bytes]:
    body = _decompress(body, headers.get("Content-Encoding"), limit)
    view = memoryview(body)
    header_len = len(body)
    if headers.get(HEADER_LENGTH) is not None:
        try:
            header_len = int(headers[HEADER_LENGTH])
        except ValueError:
            raise HTTPError(400, f"{HEADER_LENGTH} must be an integer, got '{headers[HEADER_LENGTH]}'") from None
        if not 0 <= header_len <= len(body):
            raise HTTPError(400, f"{HEADER_LENGTH} {header_len} is outside the body of {len(body)} bytes")
    try:
        req = json.loads(bytes(view[:header_len]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidDataError(f"the inference request header is not valid JSON ({exc})") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list):
        raise InvalidDataError("the inference request must be a JSON object with a list 'inputs'")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidDataError("request 'parameters' must be a JSON object")
    tensors: dict[str, np.ndarray] = {}
    offset = header_len
    for inp in req["inputs"]:
        if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
            raise InvalidDataError("every entry of 'inputs' must be an object with a 'name'")
        name = inp["name"]
        if name in tensors:
            raise InvalidDataError(f"input '{name}' given twice")
        p = inp.get("parameters") or {}
        if any(str(k).startswith("shared_memory") for k in p):
            raise InvalidDataError(f"input '{name}': shared memory is not supported by this server")
        raw = None
        if "binary_data_size" in p:
            size = p["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(body):
                raise InvalidDataError(f"input '{name}': binary_data_size {size!r} does not fit the "
                                       f"{len(body) - offset} bytes of binary data left in the body")
            raw, offset = view[offset:offset + size], offset + size
        tensors[name] = decode_tensor(name, str(inp.get("datatype")), inp.get("shape"), raw=raw,
                                      data=inp.get("data"))
    if offset != len(body):
        raise InvalidDataError(f"{len(body) - offset} bytes of binary data in the body belong to no input "
                               f"(check binary_data_size and {HEADER_LENGTH})")
    outputs = req.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                for o in outputs):
        raise InvalidDataError("request 'outputs' must be a list of objects with a 'name'")
    binary_default = bool(params.get("binary_data_output", False))
    binary = {}
    for o in outputs:
        op = o.get("parameters") or {}
        if any(str(k).startswith("shared_memory") or k == "classification" for k in op):
            raise InvalidDataError(f"output '{o['name']}': shared memory and classification are not supported")
        binary[o["name"]] = bool(op.get("binary_data", binary_default))
    names = requested_outputs([o["name"] for o in outputs], model.output_names)

    result = model.infer(tensors)

    entries, blobs = [], []
    for name in names:
        arr = result[name]
        entry: dict[str, Any] = {"name": name, "datatype": wire_name(arr.dtype), "shape": list(arr.shape)}
        if binary.get(name, binary_default):
            blob = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.reshape(-1).tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model.name, "model_version": MODEL_VERSION, "outputs": entries}
    if "id" in req:
        response["id"] = req["id"]
    head = json.dumps(response).encode()
    out = {"Content-Type": "application/json"} if not blobs else \
        {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))}
    payload = b"".join([head, *blobs])
    encoding = _accepted_encoding(headers.get("Accept-Encoding"))
    if encoding is not None:
        payload = gzip.compress(payload, 1) if encoding == "gzip" else zlib.compress(payload, 1)
        out["Content-Encoding"] = encoding
    return 200, out, payload


def _accepted_encoding(header: str | None) -> str | None:
    """``gzip`` or ``deflate`` if ``Accept-Encoding`` accepts it (q > 0), else None."""
    for item in (header or "").split(","):
        token, _, q = item.strip().partition(";")
        token = token.strip().lower()
        if token in ("gzip", "deflate") and q.strip().replace(" ", "") not in ("q=0", "q=0.0"):
            return token
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "caloreco"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.front._connection(self.connection, True)

    def finish(self) -> None:
        self.server.front._connection(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("DELETE")

    def _read_body(self, limit: int) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
            raise HTTPError(411, "chunked request bodies are not supported; send Content-Length")
        text = self.headers.get("Content-Length")
        if text is None:
            if self.command == "POST":
                raise HTTPError(411, "POST requests need a Content-Length header")
            return b""
        try:
            length = int(text)
        except ValueError:
            raise HTTPError(400, f"Content-Length must be an integer, got '{text}'") from None
        if length < 0:
            raise HTTPError(400, f"Content-Length must be >= 0, got {length}")
        if length > limit:
            error = HTTPError(413, str(RequestTooLargeError(
                f"request body of {length} bytes exceeds the limit of {limit} bytes (--max-body-bytes)")))
            if length <= _DISCARD_FACTOR * limit:  # read it away, so the client gets the answer
                while length > 0:
                    chunk = self.rfile.read(min(length, 1 << 20))
                    if not chunk:
                        break
                    length -= len(chunk)
                error.body_read = length == 0
            raise error
        body = self.rfile.read(length)
        if len(body) != length:
            raise HTTPError(400, f"request body ended after {len(body)} of {length} bytes")
        return body

    def _handle(self, method: str) -> None:
        front = self.server.front
        if not front._enter():
            self.close_connection = True
            self._send(*_json(503, {"error": "the server is shutting down and accepts no new requests"}))
            return
        try:
            try:
                body = self._read_body(front.max_body_bytes)
            except HTTPError as exc:
                if not exc.body_read:
                    self.close_connection = True  # the stream is out of step: close it
                raise
            status, headers, payload = front.route(method, self.path, self.headers, body)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error answer
            status = _status_of(exc)
            if status == 500:
                log.exception("HTTP request %s %s failed", method, self.path)
                message = f"internal error: {type(exc).__name__}: {exc}"
            else:
                message = str(exc)
            status, headers, payload = _json(status, {"error": message})
        try:
            self._send(status, headers, payload)
        finally:
            front._exit()  # after the answer is out, so that stopping waits for it

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client went away
            self.close_connection = True
