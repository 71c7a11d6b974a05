"""A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1, between a client and a model server.

Standard library only (asyncio). It listens on 127.0.0.1 in the network namespace it starts
in and, with ``--netns /proc/PID/ns/net``, moves into the server's namespace before opening
any connection to the server: so a client outside reaches a server that lives in a
namespace with only loopback, through loopback on both sides. With ``--tls-cert`` and
``--tls-key`` it speaks HTTPS to the client.

Control requests (never forwarded):

- ``POST /_proxy/faults`` ``{"next": [FAULT, ...], "every": FAULT|null, "period": N, "require": {header: value}}``:
  queue faults for the next inference requests (``POST``, one fault each, in order), set a
  fault for every inference request (or every ``period``-th one), and refuse (401, not forwarded) requests that lack a
  header value; the reply is the state before the change.
- ``GET /_proxy/stats``: ``{"requests": inference requests received, "applied": [fault, ...],
  "max_in_flight": most inference requests open at once}``.

Faults (``NAME`` or ``NAME:SECONDS``); "before" ones answer without forwarding, the others
forward the request to the server first, so the server runs the model:

- ``503``, ``429`` (``:S`` adds ``Retry-After: S``), ``html503`` (an HTML error page):
  refused before the server;
- ``drop-before``: the connection is closed without forwarding; ``drop-after``: closed after
  the server answered;
- ``slow:S``: the answer is held for S seconds; ``500-after``: the answer is replaced by 500;
- ``wrong-shape``: one image's answer is removed; ``nan``: the first value becomes NaN;
- ``html200``: a 200 HTML page instead of the answer; ``oversize``: a 200 answer that
  declares and streams 64 MiB;
- ``redirect``: 302 to another loopback address (not forwarded);
- ``echo401``: 401 whose JSON error echoes every request header (a hostile server), not forwarded.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import socket
import ssl

CLONE_NEWNET = 0x40000000
BEFORE = {"503", "429", "html503", "drop-before", "redirect", "echo401"}


class Proxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.queue: list[str] = []
        self.every: str | None = None
        self.period = 1
        self.require: dict[str, str] = {}
        self.requests = 0
        self.applied: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: list = []  # this client connection's connection to the server, once opened
        try:
            while True:
                request = await read_message(reader)
                if request is None:
                    return
                start, headers, body = request
                method, path = start.split(" ")[:2]
                if path.startswith("/_proxy/"):
                    await self.control(writer, method, path, body)
                    continue
                fault = None
                if method == "POST":
                    self.requests += 1
                    periodic = self.every if self.requests % self.period == 0 else None
                    fault = self.queue.pop(0) if self.queue else periodic
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if not await self.exchange(writer, upstream, start, headers, body, fault):
                        return
                finally:
                    if method == "POST":
                        self.in_flight -= 1
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            for w in [writer] + [u[1] for u in upstream]:
                w.close()

    async def exchange(self, writer, upstream: list, start, headers, body, fault) -> bool:
        """Answer one request; False when the client connection is to be closed."""
        if self.require and any(headers.get(k.lower()) != v for k, v in self.require.items()):
            await respond(writer, 401, b'{"error": "missing or wrong credentials"}')
            return True
        if fault:
            self.applied.append(fault)
        name, _, arg = (fault or "").partition(":")
        if name in BEFORE:
            return await self.before(writer, name, arg, headers)
        if not upstream:
            upstream.append(await asyncio.open_connection("127.0.0.1", self.upstream_port))
        up_reader, up_writer = upstream[0]
        up_writer.write(encode_request(start, headers, body))
        await up_writer.drain()
        answer = await read_message(up_reader)
        if answer is None:
            return False
        status_line, answer_headers, answer_body = answer
        status = int(status_line.split(" ")[1])
        return await self.after(writer, name, arg, status, answer_headers, answer_body)

    async def control(self, writer, method, path, body) -> None:
        state = {"requests": self.requests, "applied": self.applied, "next": self.queue,
                 "every": self.every, "max_in_flight": self.max_in_flight}
        if path == "/_proxy/faults" and method == "POST":
            change = json.loads(body or b"{}")
            self.queue = list(change.get("next", []))
            self.every = change.get("every")
            self.period = max(1, int(change.get("period", 1)))
            self.require = dict(change.get("require", {}))
        await respond(writer, 200, json.dumps(state).encode())

    async def before(self, writer, name, arg, headers) -> bool:
        retry = {"Retry-After": arg} if arg else {}
        if name == "503":
            await respond(writer, 503, b'{"error": "model is busy"}', retry)
        elif name == "429":
            await respond(writer, 429, b'{"error": "too many requests"}', retry)
        elif name == "html503":
            page = b"<html><head><title>503 Service Temporarily Unavailable</title></head><body>nginx</body></html>"
            await respond(writer, 503, page, {**retry, "Content-Type": "text/html"})
        elif name == "redirect":
            await respond(writer, 302, b"", {"Location": "http://127.0.0.2:9/elsewhere?token=x"})
        elif name == "echo401":
            echoed = "; ".join(f"{k}: {v}" for k, v in headers.items())
            await respond(writer, 401, json.dumps({"error": f"rejected; you sent {echoed}"}).encode())
        elif name == "drop-before":
            return False
        return True

    async def after(self, writer, name, arg, status, headers, body) -> bool:
        if name == "drop-after":
            return False
        if name == "slow":
            await asyncio.sleep(float(arg or 1))
        elif name == "500-after":
            status, body = 500, b'{"error": "internal error"}'
        elif name == "wrong-shape":
            body = json.dumps(drop_one_image(json.loads(body))).encode()
        elif name == "nan":
            body = json.dumps(first_value_nan(json.loads(body))).encode()
        elif name == "html200":
            await respond(writer, 200, b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>",
                          {"Content-Type": "text/html"})
            return True
        elif name == "oversize":
            size = 64 << 20
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode())
            block = b" " * (1 << 20)
            for _ in range(64):  # the client hangs up long before the end
                writer.write(block)
                await writer.drain()
            return False
        await respond(writer, status, body, {"Content-Type": headers.get("content-type", "application/json")})
        return True


def drop_one_image(doc):
    if "predictions" in doc:
        doc["predictions"] = doc["predictions"][:-1]
    else:
        output = doc["outputs"][0]
        shape = output["shape"]
        per_image = len(output["data"]) // shape[0]
        output["data"] = output["data"][:-per_image]
        output["shape"] = [shape[0] - 1, *shape[1:]]
    return doc


def first_value_nan(doc):
    if "predictions" in doc:
        first = doc["predictions"][0]
        if isinstance(first, list):
            first[0] = float("nan")
        else:
            doc["predictions"][0] = float("nan")
    else:
        doc["outputs"][0]["data"][0] = float("nan")
    return doc


async def read_message(reader: asyncio.StreamReader):
    """(start line, lower-case headers, body) of one HTTP/1.1 message, or None at EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        headers.pop("transfer-encoding")
    else:
        body = await reader.readexactly(int(headers.get("content-length", 0)))
    return lines[0], headers, body


def encode_request(start: str, headers: dict, body: bytes) -> bytes:
    headers = {k: v for k, v in headers.items() if k != "content-length"}
    head = start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + f"content-length: {len(body)}\r\n\r\n").encode("latin-1") + body


async def respond(writer, status: int, body: bytes, headers: dict | None = None) -> None:
    headers = {"Content-Type": "application/json", **(headers or {})}
    head = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + f"Content-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode("latin-1") + body)
    await writer.drain()


REASONS = {200: "OK", 302: "Found", 401: "Unauthorized", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}


def enter_netns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns {path}")
    os.close(fd)


async def serve(listener: socket.socket, proxy: Proxy, context) -> None:
    server = await asyncio.start_server(proxy.handle, sock=listener, ssl=context)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--netns")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    options = parser.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    if options.netns:
        enter_netns(options.netns)  # the listener stays where it was made
    context = None
    if options.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.tls_cert, options.tls_key)
    tmp = options.port_file + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(str(listener.getsockname()[1]))
    os.replace(tmp, options.port_file)
    asyncio.run(serve(listener, Proxy(options.upstream_port), context))


if __name__ == "__main__":
    main()
