"""A minimal Debug Adapter Protocol client over a raw socket: what an IDE does when it attaches to debugpy.

Messages are `Content-Length: N\\r\\n\\r\\n{json}` both ways (https://microsoft.github.io/debug-adapter-protocol/).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

HEADER_END = b"\r\n\r\n"


class DapError(Exception):
    pass


class DapClient:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0
        self.buffer = b""
        self.received: list[dict[str, Any]] = []  # every message so far, for failure messages

    @classmethod
    def connect(cls, host: str, port: int, deadline: float) -> DapClient:
        """A client whose `initialize` debugpy answered. Retries until then: the published port accepts
        (docker-proxy) before debugpy listens in the container, and then drops the connection."""
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client = cls(socket.create_connection((host, port), timeout=5))
                client.request(
                    "initialize",
                    {
                        "clientID": "tfdock-tests",
                        "adapterID": "debugpy",
                        "pathFormat": "path",
                        "linesStartAt1": True,
                        "columnsStartAt1": True,
                    },
                    timeout=10,
                )
                return client
            except (OSError, DapError) as error:
                last_error = error
                time.sleep(1)
        raise DapError(f"debugpy never answered on {host}:{port}: {last_error!r}")

    def close(self) -> None:
        self.sock.close()

    def send(self, command: str, arguments: dict[str, Any] | None = None) -> int:
        self.seq += 1
        body = json.dumps(
            {"seq": self.seq, "type": "request", "command": command, "arguments": arguments or {}}
        )
        payload = body.encode()
        self.sock.sendall(f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        return self.seq

    def request(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30) -> dict:
        """Send a request and return its successful response's body."""
        seq = self.send(command, arguments)
        return self.response_to(seq, timeout)

    def response_to(self, seq: int, timeout: float = 30) -> dict:
        response = self.wait_for(lambda m: m["type"] == "response" and m["request_seq"] == seq, timeout)
        if not response["success"]:
            raise DapError(f"{response['command']} failed: {response.get('message')}")
        return response.get("body", {})

    def event(self, name: str, timeout: float = 30) -> dict:
        return self.wait_for(lambda m: m["type"] == "event" and m["event"] == name, timeout).get("body", {})

    def wait_for(self, matches: Any, timeout: float) -> dict:
        """The first message (already received or next) that matches; consumed from the backlog."""
        deadline = time.monotonic() + timeout
        for index, message in enumerate(self.received):
            if matches(message):
                return self.received.pop(index)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DapError(f"timed out after {timeout} s; received: {self.received[-10:]}")
            message = self._read_message(remaining)
            if matches(message):
                return message
            self.received.append(message)

    def _read_message(self, timeout: float) -> dict:
        self.sock.settimeout(timeout)
        while HEADER_END not in self.buffer:
            self._fill()
        header, self.buffer = self.buffer.split(HEADER_END, 1)
        length = int(dict(line.split(": ", 1) for line in header.decode().split("\r\n"))["Content-Length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return json.loads(body)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as error:
            raise DapError("no message from the adapter in time") from error
        if not chunk:
            raise DapError("the adapter closed the connection")
        self.buffer += chunk
