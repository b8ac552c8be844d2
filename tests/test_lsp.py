"""The language server, driven as a real subprocess over stdio with JSON-RPC (Content-Length framing).

One server serves most tests (module fixture) so that the suite stays fast; each test opens its own
documents under tmp_path. Timings are measured in benchmarks/lsp.py, never asserted here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("pygls", reason="the language server needs the lsp extra (pygls)")

from flowdsl.editor.completion import complete  # noqa: E402
from flowdsl.editor.diagnostics import to_lsp  # noqa: E402
from flowdsl.editor.documents import check_text  # noqa: E402
from flowdsl.editor.hover import hover_text  # noqa: E402
from flowdsl.editor.navigation import definition, symbols  # noqa: E402
from flowdsl.editor.stdio_client import LspClient, ServerError  # noqa: E402

GLOW = """\
let width = 16
block step(w) {
    actnorm
    coupling affine(mask=checkerboard, net=conv_net(hidden=w))
}
flow glow {
    input x: image[1, 4, 4]
    condition y: label[3]
    base normal
    repeat 2 { step(width) }
}
"""


@pytest.fixture(scope="module")
def client():
    c = LspClient([sys.executable, "-m", "flowdsl", "lsp"])  # as an editor starts it
    c.initialize()
    yield c
    assert c.close() == 0


def _doc(tmp_path: Path, name: str, text: str) -> tuple[str, Path]:
    path = tmp_path / name
    path.write_text(text)
    return path.resolve().as_uri(), path


def _at(uri: str, line: int, character: int) -> dict:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}


def test_initialize_announces_the_features(client):
    caps = client.capabilities
    assert caps["hoverProvider"] and caps["definitionProvider"] and caps["documentSymbolProvider"]
    assert "(" in caps["completionProvider"]["triggerCharacters"]
    assert caps["textDocumentSync"]["change"] == 2  # incremental
    assert client.request("flowdsl/status")["torch"] is False


def test_a_valid_spec_has_no_diagnostics_and_torch_stays_out(client, tmp_path):
    uri, _ = _doc(tmp_path, "glow.flow", GLOW)
    client.open(uri, GLOW)
    assert client.diagnostics(uri, 1) == []
    status = client.request("flowdsl/status")
    assert status["torch"] is False and uri in status["documents"]


def test_diagnostics_carry_spans_severity_hints_and_block_traces(client, tmp_path):
    text = GLOW.replace("actnorm", "actnrm")
    uri, _ = _doc(tmp_path, "bad.flow", text)
    client.open(uri, text)
    [diag] = client.diagnostics(uri, 1)
    assert diag["severity"] == 1 and diag["source"] == "flowdsl" and "actnrm" in diag["message"]
    assert diag["range"] == {"start": {"line": 2, "character": 4}, "end": {"line": 2, "character": 10}}
    notes = [r["message"] for r in diag["relatedInformation"]]
    assert "in block 'step' called here" in notes  # the call site, from the trace
    assert any(n.startswith("hint: did you mean 'actnorm'") for n in notes)
    call = next(r for r in diag["relatedInformation"] if r["message"].startswith("in block"))
    assert call["location"]["range"]["start"] == {"line": 9, "character": 15}


def test_a_warning_is_a_warning(client, tmp_path):
    text = "flow f {\n    input x: vector[4]\n    condition y: label[3]\n    actnorm\n}\n"  # actnorm reads no context
    uri, _ = _doc(tmp_path, "warn.flow", text)
    client.open(uri, text)
    severities = {d["severity"] for d in client.diagnostics(uri, 1)}
    assert severities == {2}  # the condition no layer reads


def test_edits_and_half_typed_lines(client, tmp_path):
    uri, _ = _doc(tmp_path, "edit.flow", GLOW)
    client.open(uri, GLOW)
    assert client.diagnostics(uri, 1) == []
    half = GLOW.replace("    base normal\n", "    base normal\n    coupling affine(mask=\n")
    client.change(uri, half, 2)
    [syntax] = client.diagnostics(uri, 2)
    assert syntax["severity"] == 1 and syntax["range"]["start"]["line"] >= 9
    items = client.request("textDocument/completion", _at(uri, 9, len("    coupling affine(mask=")))["items"]
    assert {"half", "checkerboard", "channel"} <= {i["label"] for i in items}
    client.change(uri, GLOW, 3)
    assert client.diagnostics(uri, 3) == []


def test_rapid_edits_are_debounced_into_one_check_of_the_last(client, tmp_path):
    uri, _ = _doc(tmp_path, "rapid.flow", GLOW)
    client.open(uri, GLOW)
    client.diagnostics(uri, 1)
    before = client.request("flowdsl/status")["checks"]
    for version in range(2, 12):
        client.change(uri, GLOW.replace("width = 16", f"width = {version}"), version)
    assert client.diagnostics(uri, 11) == []
    assert client.request("flowdsl/status")["checks"] - before < 10  # ten edits, fewer checks


def test_hover_layer_declaration_and_block_call(client, tmp_path):
    uri, _ = _doc(tmp_path, "hover.flow", GLOW)
    client.open(uri, GLOW)
    client.diagnostics(uri, 1)
    layer = client.request("textDocument/hover", _at(uri, 3, 6))["contents"]["value"]
    for fact in ("**coupling affine**", "out (1, 4, 4)", "parameters:", "log-det: exact", "dependency: coupling",
                 "affine coupling"):
        assert fact in layer
    argument = client.request("textDocument/hover", _at(uri, 3, 22))["contents"]["value"]
    assert argument.startswith("argument `mask` of `coupling affine`: Mask (default half), here checkerboard")
    assert "input x" in client.request("textDocument/hover", _at(uri, 6, 10))["contents"]["value"]
    cond = client.request("textDocument/hover", _at(uri, 7, 14))["contents"]["value"]
    assert "condition y" in cond and "(3,)" in cond
    call = client.request("textDocument/hover", _at(uri, 9, 17))["contents"]["value"]
    assert "block step" in call and "expands to 4 layers" in call
    base = client.request("textDocument/hover", _at(uri, 8, 6))["contents"]["value"]
    assert "**base normal**" in base and "reads shape (1, 4, 4)" in base
    const = client.request("textDocument/hover", _at(uri, 0, 5))["contents"]["value"]
    assert "constant width" in const and "16" in const
    assert client.request("textDocument/hover", _at(uri, 11, 0)) is None  # past the end


def test_completion_of_layers_arguments_and_values(client, tmp_path):
    text = "flow f {\n    input x: vector[4]\n    \n}\n"
    uri, _ = _doc(tmp_path, "complete.flow", text)
    client.open(uri, text)
    labels = {i["label"] for i in client.request("textDocument/completion", _at(uri, 2, 4))["items"]}
    assert {"planar", "coupling affine", "actnorm", "repeat", "base"} <= labels
    assert "masked_conv" not in labels  # an autoregressive layer, not offered in a .flow file
    half = text.replace("    \n", "    autoregressive affine(\n")
    client.change(uri, half, 2)
    items = client.request("textDocument/completion", _at(uri, 2, len("    autoregressive affine(")))["items"]
    direction = next(i for i in items if i["label"] == "direction")
    assert direction["detail"] == "direction: forward | inverse = forward" and direction["insertText"] == "direction="
    line = "    autoregressive affine(net=mlp(), order="
    client.change(uri, text.replace("    \n", line + "\n"), 3)
    values = {i["label"] for i in client.request("textDocument/completion", _at(uri, 2, len(line)))["items"]}
    assert {"natural", "reverse", "random"} <= values


def test_definition_of_blocks_constants_and_use_files(client, tmp_path):
    (tmp_path / "lib").mkdir()
    lib_uri, _ = _doc(tmp_path, "lib/steps.flow", "block step2() {\n    actnorm\n}\n")
    text = 'use "lib/steps.flow"\n' + GLOW.replace("repeat 2 { step(width) }", "repeat 2 { step(width) }\n    step2")
    uri, _ = _doc(tmp_path, "main.flow", text)
    client.open(uri, text)
    assert client.diagnostics(uri, 1) == []
    [block] = client.request("textDocument/definition", _at(uri, 10, 17))
    assert block["uri"] == uri and block["range"]["start"] == {"line": 2, "character": 6}
    [const] = client.request("textDocument/definition", _at(uri, 10, 21))
    assert const["range"]["start"] == {"line": 1, "character": 4}
    [other] = client.request("textDocument/definition", _at(uri, 11, 6))
    assert other["uri"] == lib_uri and other["range"]["start"] == {"line": 0, "character": 6}
    [used] = client.request("textDocument/definition", _at(uri, 0, 8))
    assert used["uri"] == lib_uri
    assert client.request("textDocument/definition", _at(uri, 3, 6)) == []  # a layer: no definition
    client.change(uri, 'use "lib/\n' + text.split("\n", 1)[1], 2)  # retyping the use line
    files = client.request("textDocument/completion", _at(uri, 0, len('use "lib/')))["items"]
    assert [i["label"] for i in files] == ["lib/steps.flow"]


def test_document_symbols(client, tmp_path):
    uri, _ = _doc(tmp_path, "symbols.flow", GLOW)
    client.open(uri, GLOW)
    client.diagnostics(uri, 1)
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    assert [(s["name"], s["kind"]) for s in symbols] == [("width", 14), ("step", 12), ("glow", 5)]
    assert [c["name"] for c in symbols[2]["children"]] == ["x", "y"]
    assert symbols[2]["selectionRange"]["start"] == {"line": 5, "character": 5}


def test_a_file_is_rechecked_when_a_file_it_uses_changes(client, tmp_path):
    lib_text = "block step() {\n    actnorm\n}\n"
    lib_uri, _ = _doc(tmp_path, "blocks.flow", lib_text)
    text = 'use "blocks.flow"\nflow f {\n    input x: vector[4]\n    step\n}\n'
    uri, _ = _doc(tmp_path, "user.flow", text)
    client.open(uri, text)
    assert client.diagnostics(uri, 1) == []
    client.open(lib_uri, lib_text)
    client.change(lib_uri, lib_text.replace("actnorm", "actnorn"), 2)  # edited in the editor, not saved
    [diag] = client.diagnostics(uri)
    assert "actnorn" in diag["message"] and diag["range"]["start"] == {"line": 3, "character": 4}
    assert diag["relatedInformation"][0]["location"]["uri"] == lib_uri
    client.change(lib_uri, lib_text, 3)
    assert client.diagnostics(uri) == []
    client.diagnostics(lib_uri, 3)
    hover = client.request("textDocument/hover", _at(lib_uri, 1, 6))["contents"]["value"]  # the library's actnorm
    assert "**actnorm**" in hover and "parameters: 8" in hover and "user.flow" in hover


@pytest.mark.parametrize("text", [
    "", "flow", "flow f {", "flow f {\n    input x: vector[\n", "autoregressive a {\n}\n", "\x00\x01\xff",
    "flow f {\n    input x: vector[4]\n    coupling affine(mask=half, net=mlp(hidden=[8]), clamp=-1)\n}\n",
    'use "missing.flow"\nuse "missing.flow"\n', "block b() { b }\nflow f {\n input x: vector[2]\n b\n}\n",
])
def test_bad_specs_get_diagnostics_not_crashes(client, tmp_path, text):
    uri, _ = _doc(tmp_path, "bad.flow", "")
    client.open(uri, text)
    diags = client.diagnostics(uri, 1)
    assert all(d["range"]["start"]["line"] >= 0 and d["message"] for d in diags)
    assert diags or text == ""  # only the empty text may pass (with a warning, which is still a diagnostic)
    hover = client.request("textDocument/hover", _at(uri, 0, 1))  # answered, not an error
    assert hover is None or "contents" in hover
    items = client.request("textDocument/completion", _at(uri, 0, 0))["items"]
    assert isinstance(items, list)
    assert client.request("flowdsl/status")["torch"] is False


def test_injected_faults_are_answered_with_an_error_and_the_server_goes_on(tmp_path):
    c = LspClient(env={"FLOWDSL_LSP_FAULT": "textDocument/hover,check"})  # a request handler and the checker
    try:
        c.initialize()
        uri, _ = _doc(tmp_path, "f.flow", GLOW)
        c.open(uri, GLOW)
        with pytest.raises(ServerError, match="fault injected"):
            c.request("textDocument/hover", _at(uri, 3, 6))
        items = c.request("textDocument/completion", _at(uri, 9, 4))["items"]  # the next request is served
        assert "actnorm" in {i["label"] for i in items}
        status = c.request("flowdsl/status")
        assert status["checks"] == 0 and status["torch"] is False  # the check failed; the server did not
        with pytest.raises(ServerError, match="fault injected"):
            c.request("textDocument/hover", _at(uri, 3, 6))
    finally:
        assert c.close() == 0
    log = c.stderr_text()  # logged, with tracebacks
    assert "fault injected into textDocument/hover" in log and "fault injected into the checker" in log


def test_a_10000_layer_file_is_checked(client, tmp_path):
    text = "flow big {\n    input x: vector[4]\n" + "    planar\n" * 10_000 + "}\n"
    uri, _ = _doc(tmp_path, "big.flow", text)
    client.open(uri, text)
    assert client.diagnostics(uri, 1, timeout=120) == []
    hover = client.request("textDocument/hover", _at(uri, 9_001, 6))["contents"]["value"]
    assert "layer 8999 of model `big`" in hover


def test_importing_the_server_imports_no_torch():
    code = ("import sys, flowdsl.editor.server, flowdsl.editor.lexer, flowdsl.editor.textmate;"
            "flowdsl.editor.server.build_server(); assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_incremental_changes_and_a_used_file_changed_on_disk(client, tmp_path):
    lib = tmp_path / "disk.flow"
    lib.write_text("block step() {\n    actnorm\n}\n")
    text = 'use "disk.flow"\nflow f {\n    input x: vector[4]\n    step\n}\n'
    uri, _ = _doc(tmp_path, "reader.flow", text)
    client.open(uri, text)
    assert client.diagnostics(uri, 1) == []
    insert = {"range": {"start": {"line": 3, "character": 8}, "end": {"line": 3, "character": 8}},
              "text": " -> coupling affine("}  # typed into the line, not yet closed
    client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [insert]})
    [syntax] = client.diagnostics(uri, 2)
    assert "')'" in syntax["message"]
    labels = {i["label"] for i in client.request("textDocument/completion", _at(uri, 3, 28))["items"]}
    assert {"mask", "net", "clamp"} <= labels
    undo = {"range": {"start": {"line": 3, "character": 8}, "end": {"line": 3, "character": 28}}, "text": ""}
    client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 3}, "contentChanges": [undo]})
    assert client.diagnostics(uri, 3) == []
    lib.write_text("block step() {\n    actnorm(oops=1)\n}\n")  # another program edits the used file
    client.notify("workspace/didChangeWatchedFiles", {"changes": [{"uri": lib.resolve().as_uri(), "type": 2}]})
    [diag] = client.diagnostics(uri)
    assert "oops" in diag["message"]


def test_completion_in_an_ar_file_offers_its_own_layers(client, tmp_path):
    text = "autoregressive a {\n    input x: image[1, 4, 4] levels 2\n    masked_conv(mask=\n}\n"
    uri, _ = _doc(tmp_path, "a.ar", text)
    client.open(uri, text)
    assert client.diagnostics(uri, 1)  # the half-typed call is a syntax error
    labels = {i["label"] for i in client.request("textDocument/completion", _at(uri, 2, 4))["items"]}
    assert "masked_conv" in labels and "planar" not in labels
    values = {i["label"] for i in client.request("textDocument/completion", _at(uri, 2, 21))["items"]}
    assert values == {"A", "B"}


def test_lsp_without_pygls_says_how_to_install_it(monkeypatch, capsys):
    from flowdsl.cli.main import main

    monkeypatch.delitem(sys.modules, "flowdsl.editor.server", raising=False)
    monkeypatch.setitem(sys.modules, "pygls.lsp.server", None)
    assert main(["lsp"]) == 2
    assert "pip install 'flowdsl[lsp]'" in capsys.readouterr().err


_FRAGMENTS = ["flow f {", "autoregressive a {", "}", "\n", "    ", "input x: vector[4]", "input x: image[1, 4, 4]",
              "coupling affine(", "mask=", "half", ")", ",", "net=mlp(hidden=[8])", "actnorm", "->", "planar",
              "repeat 2 {", "block b(w) {", "b(", "let w = ", "2", "w", "use \"x.flow\"", "(", "[", "]", "=", "#c",
              "condition y: label[3]", "base normal", "output categorical", "for i in 1..2 {", "\u00e9\U0001d400"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join), st.data())
def test_every_feature_answers_any_half_typed_text(text, data):
    """In process, the functions behind each request: no exception for any text or cursor."""
    checked = check_text("file:///p/h.flow", "/p/h.flow", 1, text)
    for diag in to_lsp(checked):
        assert diag.range.start.line >= 0 and diag.message
    lines = text.split("\n")
    line = data.draw(st.integers(0, len(lines) - 1))
    character = data.draw(st.integers(0, len(lines[line]) + 1))
    line1, column1 = checked.index.to_pos(line, character)
    hover = hover_text(checked, line1, column1)
    assert hover is None or hover.strip()
    before = "\n".join(lines[:line] + [lines[line][:character]])
    assert all(item.label for item in complete(before, "h.flow", checked.analysis.unit))
    assert all(loc.uri for loc in definition(checked, line1, column1))
    assert all(sym.name for sym in symbols(checked))


CONDITIONAL = """\
flow post {
    input theta: vector[4]
    condition obs: sequence[20, 2] embed mlp([16], out=4)
    coupling affine(mask=half)
    permute
    coupling affine(mask=half, reads=false)
    base normal
}
"""


def test_a_conditional_spec_over_the_server(client, tmp_path):
    """Diagnostics, hover and completion on a spec with a sequence condition and an embed net."""
    uri, _ = _doc(tmp_path, "post.flow", CONDITIONAL)
    client.open(uri, CONDITIONAL)
    assert client.diagnostics(uri, 1) == []
    cond = client.request("textDocument/hover", _at(uri, 2, 20))["contents"]["value"]
    for fact in ("**condition obs**: sequence[20, 2] embed mlp(hidden=[16], out=4)", "shape (20, 2), real values",
                 "encoded: sequence[2, 20], shape (2, 20)", "embed: `mlp(hidden=[16])` (40,) -> (4,), 724 parameters",
                 "the layers read vector[4], shape (4,)", "read by 1 of 3 layers (1 say reads=false)"):
        assert fact in cond, fact
    bad = CONDITIONAL.replace("mlp([16], out=4)", "conv_net(hidden=8, out=4)").replace("reads=false", "reads=2")
    client.change(uri, bad, 2)
    diags = client.diagnostics(uri, 2)
    assert sorted((d["range"]["start"]["line"], d["range"]["start"]["character"]) for d in diags) == [(2, 41), (5, 31)]
    assert any("needs image input" in d["message"] for d in diags)
    half = "flow f {\n    input x: vector[3]\n    condition c: vector[5] \n}\n"
    client.change(uri, half, 3)
    labels = [i["label"] for i in client.request("textDocument/completion", _at(uri, 2, 27))["items"]]
    assert labels == ["levels", "embed"]
    half = "flow f {\n    input x: vector[3]\n    condition c: vector[5] embed \n}\n"
    client.change(uri, half, 4)
    labels = {i["label"] for i in client.request("textDocument/completion", _at(uri, 2, 33))["items"]}
    assert {"mlp", "resnet", "conv_net"} <= labels and "coupling affine" not in labels
    half = "flow f {\n    input x: vector[3]\n    condition c: vector[5]\n    coupling affine(reads=\n}\n"
    client.change(uri, half, 5)
    labels = [i["label"] for i in client.request("textDocument/completion", _at(uri, 3, 26))["items"]]
    assert labels == ["true", "false"]


def test_warnings_of_a_condition_no_layer_reads(tmp_path):
    """reads=false on every layer: the unread-condition warning, with the hint, as an LSP warning."""
    text = ("flow f {\n    input x: vector[4]\n    condition c: image[1, 4, 4]\n    coupling affine(reads=false)\n"
            "    permute\n    coupling affine(reads=false)\n}\n")
    checked = check_text("file:///p/w.flow", str(tmp_path / "w.flow"), 1, text)
    (diag,) = to_lsp(checked)
    assert diag.severity == 2 and "no layer reads it" in diag.message and diag.range.start.line == 2
    assert [r.message for r in diag.related_information] == ["hint: 2 layers say reads=false"]
    assert "read by 0 of 3 layers (2 say reads=false)" in hover_text(checked, 3, 6)
