// Starts `nnc lsp` (the nncircuit language server, over stdio) for .nn files.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace
    .getConfiguration("nncircuit")
    .get("server.command", ["nnc", "lsp"]);
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [{ scheme: "file", language: "nn" }],
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.nn") },
  };
  client = new LanguageClient("nncircuit", "nncircuit language server", serverOptions, clientOptions);
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
