"""The flowdsl language server (pygls, stdio): diagnostics, hover, completion, definitions, symbols.

Documents are checked with the same analysis as ``flowdsl check`` (torch is never imported, no
spec code runs) on a worker thread, ``DEBOUNCE_S`` after the last edit; a document that ``use``s a
file is re-checked when that file changes (in the editor or on disk). A request that fails is
logged and answered with an error response; the server keeps serving. ``flowdsl/status`` is a
custom request for tests and bug reports. ``FLOWDSL_LSP_FAULT=<method>[,check]`` makes those request
handlers (and the checker) fail, to test the recovery.

Example:
    >>> server = build_server()
    >>> server.name, sorted(status(server))
    ('flowdsl', ['checks', 'documents', 'pending', 'torch'])
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from flowdsl import __version__
from flowdsl.editor.completion import complete
from flowdsl.editor.diagnostics import to_lsp
from flowdsl.editor.documents import Checked, Documents, check_text, open_file_map
from flowdsl.editor.hover import hover_in_used_file, hover_text
from flowdsl.editor.navigation import definition, symbols
from flowdsl.editor.positions import LineIndex

__all__ = ["FlowDSLServer", "build_server", "main", "status", "DEBOUNCE_S"]

log = logging.getLogger("flowdsl.lsp")
DEBOUNCE_S = 0.25  # seconds of quiet after an edit before the document is checked
STATUS = "flowdsl/status"


class FlowDSLServer(LanguageServer):
    """A pygls server that also holds the checked documents and the pending checks."""

    def __init__(self) -> None:
        super().__init__("flowdsl", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.documents = Documents()
        self.pending: dict[str, asyncio.Task] = {}
        self.checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowdsl-check")
        self.checks = 0
        #: methods (and ``check``, the checker) made to fail, for the tests of the recovery
        self.faults = set(os.environ.get("FLOWDSL_LSP_FAULT", "").split(","))

    def path_of(self, uri: str) -> str:
        return to_fs_path(uri) or uri

    def open_texts(self, except_uri: str) -> dict[str, str]:
        docs = self.workspace.text_documents
        return {self.path_of(uri): doc.source for uri, doc in docs.items() if uri != except_uri}

    def schedule(self, uri: str, delay: float) -> None:
        """Check ``uri`` after ``delay`` seconds, replacing a check not yet started."""
        if uri not in self.workspace.text_documents:
            return
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._check_later(uri, delay))

    def schedule_dependents(self, path: str, delay: float) -> None:
        for uri in self.documents.dependents(path):
            self.schedule(uri, delay)

    async def _check_later(self, uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        started = time.perf_counter()
        doc = self.workspace.get_text_document(uri)
        text, version, opened = doc.source, doc.version, open_file_map(self.open_texts(uri))
        loop = asyncio.get_running_loop()
        try:
            if "check" in self.faults:
                raise RuntimeError("fault injected into the checker (FLOWDSL_LSP_FAULT)")
            checked = await loop.run_in_executor(self.checker, check_text, uri, self.path_of(uri), version, text,
                                                 opened)
        except Exception:  # a bug in the checker must not stop the server; the log has it
            log.exception("checking %s failed", uri)
            return
        finally:
            if self.pending.get(uri) is asyncio.current_task():
                del self.pending[uri]
        if uri not in self.workspace.text_documents or self.workspace.get_text_document(uri).version != version:
            return  # closed or edited meanwhile: a newer check is on its way
        self.checks += 1
        self.documents.store(checked)
        self.publish(checked)
        log.info("checked %s (version %s) in %.2f s", uri, version, time.perf_counter() - started)

    def publish(self, checked: Checked) -> None:
        try:
            diagnostics = to_lsp(checked)
        except Exception:
            log.exception("converting the diagnostics of %s failed", checked.uri)
            diagnostics = []
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=checked.uri, version=checked.version, diagnostics=diagnostics))


def status(server: FlowDSLServer) -> dict[str, Any]:
    """What ``flowdsl/status`` answers: whether torch is loaded, the checked documents, checks run."""
    return {"torch": "torch" in sys.modules, "documents": sorted(server.documents.checked), "checks": server.checks,
            "pending": sorted(server.pending)}


def _guarded(server: FlowDSLServer, method: str):
    """Decorator: log a failure of a request handler and answer it with an error (pygls sends the error)."""
    def wrap(handler):
        @wraps(handler)
        def run(params):
            try:
                if method in server.faults:
                    raise RuntimeError(f"fault injected into {method} (FLOWDSL_LSP_FAULT)")
                return handler(params)
            except Exception:
                log.exception("%s failed", method)
                raise
        return run
    return wrap


def warm_up() -> None:
    """Build the parsers and load the layer catalog, so that the first check does not pay for them."""
    from flowdsl.language.parser import get_parser
    from flowdsl.layers.registry import LAYERS

    for kind in ("flow", "ar"):
        get_parser(kind)
    LAYERS.names()


def _position(checked: Checked, pos: types.Position) -> tuple[int, int]:
    return checked.index.to_pos(pos.line, pos.character)


def build_server() -> FlowDSLServer:
    """A server with every feature registered (not yet started)."""
    server = FlowDSLServer()

    @server.feature(types.INITIALIZED)
    def initialized(params: types.InitializedParams) -> None:
        server.checker.submit(warm_up)  # on the checker's thread: a check waits for it, requests do not

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        server.schedule(params.text_document.uri, 0.0)
        server.schedule_dependents(server.path_of(params.text_document.uri), DEBOUNCE_S)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        server.schedule(params.text_document.uri, DEBOUNCE_S)
        server.schedule_dependents(server.path_of(params.text_document.uri), DEBOUNCE_S)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        server.schedule(params.text_document.uri, 0.0)
        server.schedule_dependents(server.path_of(params.text_document.uri), 0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        task = server.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        server.documents.forget(uri)
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        server.schedule_dependents(server.path_of(uri), 0.0)  # they read the file from disk again

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched_files(params: types.DidChangeWatchedFilesParams) -> None:
        for change in params.changes:
            server.schedule_dependents(server.path_of(change.uri), DEBOUNCE_S)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    @_guarded(server, types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams) -> types.Hover | None:
        checked = server.documents.get(params.text_document.uri)
        if checked is None:
            return None
        line, column = _position(checked, params.position)
        text = hover_text(checked, line, column) if checked.analysis.models else None
        for uri in server.documents.dependents(checked.path) if text is None else ():
            user = server.documents.get(uri)
            found = hover_in_used_file(user, checked.path, line, column) if user else None
            if user is not None and found is not None:
                text = found + f"\n\n(in `{Path(user.path).name}`, which uses this file)"
                break
        if text is None and not checked.analysis.models:
            text = hover_text(checked, line, column)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=["(", ",", "=", " ", ">"]))
    @_guarded(server, types.TEXT_DOCUMENT_COMPLETION)
    def completion(params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        doc = server.workspace.get_text_document(uri)
        line, char = params.position.line, params.position.character
        current = LineIndex(doc.lines[line] if line < len(doc.lines) else "")
        before = "".join(doc.lines[:line]) + current.prefix(0, char)  # char counts UTF-16 units
        last = server.documents.last_parsed(uri)
        items = complete(before, server.path_of(uri), last.analysis.unit if last else None)
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    @_guarded(server, types.TEXT_DOCUMENT_DEFINITION)
    def goto_definition(params: types.DefinitionParams) -> list[types.Location]:
        checked = server.documents.last_parsed(params.text_document.uri)
        return definition(checked, *_position(checked, params.position)) if checked else []

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_guarded(server, types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbols(params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
        checked = server.documents.last_parsed(params.text_document.uri)
        return symbols(checked) if checked else []

    @server.feature(STATUS)
    @_guarded(server, STATUS)
    def server_status(params: Any) -> dict[str, Any]:
        return status(server)

    return server


def main(log_file: str | None = None) -> int:
    """Serve on stdin/stdout until the client says exit."""
    logging.basicConfig(filename=log_file, level=logging.INFO if log_file else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    build_server().start_io()
    return 0
