// flowdsl for VS Code: starts `flowdsl lsp` (setting flowdsl.server.command) for .flow and .ar files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace.getConfiguration("flowdsl").get("server.command", ["flowdsl", "lsp"]);
  const server = { command, args };
  client = new LanguageClient("flowdsl", "flowdsl", { run: server, debug: server }, {
    documentSelector: [{ scheme: "file", language: "flowdsl" }, { scheme: "untitled", language: "flowdsl" }],
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.{flow,ar}") },
  });
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
