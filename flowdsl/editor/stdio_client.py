"""A minimal LSP client over a subprocess's stdio (JSON-RPC with ``Content-Length`` framing).

Used by the tests and the benchmark to drive the real server (``python -m flowdsl.editor``).
Notifications the server sends (diagnostics, log messages) are kept in arrival order.

Example:
    >>> frame({"jsonrpc": "2.0", "method": "exit"})
    b'Content-Length: 33\\r\\n\\r\\n{"jsonrpc":"2.0","method":"exit"}'
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["frame", "LspClient", "ServerError"]


def frame(message: dict[str, Any]) -> bytes:
    """One JSON-RPC message with its header."""
    body = json.dumps(message, separators=(",", ":")).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class ServerError(Exception):
    """The server answered a request with an error."""

    def __init__(self, error: dict[str, Any]):
        super().__init__(error.get("message", "error"))
        self.error = error


class LspClient:
    """Start the server and talk to it; ``request`` waits for the answer, ``wait_for`` for a notification."""

    def __init__(self, command: list[str] | None = None, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None):
        self.proc = subprocess.Popen(command or [sys.executable, "-m", "flowdsl.editor"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                     env={**os.environ, **(env or {})})
        self.messages: queue.Queue = queue.Queue()
        self.notifications: list[dict[str, Any]] = []
        self.answers: dict[int, dict[str, Any]] = {}
        self.next_id = 0
        #: what the server announced in ``initialize``
        self.capabilities: dict[str, Any] = {}
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # drained, so that a chatty server never blocks on a full pipe
            self.stderr_lines.append(line.decode(errors="replace"))

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    self.messages.put(None)
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length is not None:
                self.messages.put(json.loads(out.read(length)))

    def _pump(self, deadline: float) -> bool:
        try:
            msg = self.messages.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            return False
        if msg is None:
            raise EOFError("the server closed its output: " + self.stderr_text())
        if "id" in msg and "method" not in msg:
            self.answers[msg["id"]] = msg
        elif "id" in msg:  # a request from the server (registerCapability, ...): accept it
            self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
        else:
            self.notifications.append(msg)
        return True

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame(message))
        self.proc.stdin.flush()

    def notify(self, method: str, params: Any = None) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any = None, timeout: float = 60.0) -> Any:
        self.next_id += 1
        ident = self.next_id
        self._send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while ident not in self.answers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {method} in {timeout} s")
            self._pump(deadline)
        answer = self.answers.pop(ident)
        if "error" in answer:
            raise ServerError(answer["error"])
        return answer.get("result")

    def wait_for(self, method: str, match=lambda params: True, timeout: float = 60.0) -> dict[str, Any]:
        """The params of the first notification ``method`` (not yet taken) that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            for i, note in enumerate(self.notifications):
                if note.get("method") == method and match(note.get("params")):
                    return self.notifications.pop(i)["params"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} in {timeout} s")
            self._pump(deadline)

    def initialize(self, root: str | Path | None = None) -> dict[str, Any]:
        uri = Path(root).resolve().as_uri() if root else None
        result = self.request("initialize", {"processId": os.getpid(), "rootUri": uri, "capabilities": {}})
        self.capabilities = result["capabilities"]
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, version: int = 1, language: str = "flowdsl") -> None:
        self.notify("textDocument/didOpen",
                    {"textDocument": {"uri": uri, "languageId": language, "version": version, "text": text}})

    def change(self, uri: str, text: str, version: int) -> None:
        """Replace the whole text (a change without a range)."""
        self.notify("textDocument/didChange",
                    {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]})

    def diagnostics(self, uri: str, version: int | None = None, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The next diagnostics published for ``uri`` (for ``version`` when given)."""
        params = self.wait_for("textDocument/publishDiagnostics",
                               lambda p: p["uri"] == uri and (version is None or p.get("version") == version),
                               timeout)
        return params["diagnostics"]

    def close(self, timeout: float = 10.0) -> int:
        """shutdown, exit, and the server's exit status."""
        try:
            self.request("shutdown", timeout=timeout)
            self.notify("exit")
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def stderr_text(self) -> str:
        """What the server wrote to stderr so far (its log, when no log file is given); all of it once it exited."""
        if self.proc.poll() is not None:
            self._stderr_reader.join(timeout=10)
        return "".join(self.stderr_lines)
