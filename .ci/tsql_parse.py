#!/usr/bin/env python3
"""Checks T-SQL files with Microsoft's own parser (the one behind SSMS and
VS Code IntelliSense), offline. Syntax only: names are not bound.

usage: tsql_parse.py --canary CANARY.sql FILE.sql [FILE.sql ...]

Batches are separated by lines holding only GO; a line `-- @@ NAME` names
the batch below it in the report. Every FILE must parse without a syntax
error, and CANARY (a deliberately broken statement) must not: a checker
that accepts everything fails too. Exit 0: all good; 1: syntax errors or
an accepted canary; 2: the parser could not be installed or run.

The parser ships in the PyPI wheel mssqltoolsservice-linux-64 (Microsoft's
SQL Tools Service, a self-contained .NET program). It is downloaded with
pip into $TSQL_PARSER_DIR (default target/tsql-parser), started as a
language server, and each file is opened as a document; the diagnostics it
publishes for a document are that file's syntax errors.
"""
import glob
import json
import os
import queue
import subprocess
import sys
import threading
import time
import zipfile

WHEEL = "mssqltoolsservice-linux-64==1.0.0a21"
HOME = os.environ.get("TSQL_PARSER_DIR", os.path.join("target", "tsql-parser"))
BIN_DIR = os.path.join(HOME, "mssqltoolsservice", "bin")
BIN = os.path.join(BIN_DIR, "MicrosoftSqlToolsServiceLayer")
ANSWER_WITHIN = 120  # seconds, per document


def install():
    if os.path.exists(BIN):
        return
    os.makedirs(HOME, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", HOME, WHEEL],
        check=True,
    )
    wheel = sorted(glob.glob(os.path.join(HOME, "mssqltoolsservice_Linux_64-*.whl")))[-1]
    with zipfile.ZipFile(wheel) as z:
        z.extractall(HOME)
    os.chmod(BIN, 0o755)
    # The service's .NET runtime needs ICU unless told to use invariant
    # globalization (the CI machine has no ICU it would find).
    config = os.path.join(BIN_DIR, "MicrosoftSqlToolsServiceLayer.runtimeconfig.json")
    with open(config, "w") as f:
        json.dump({"runtimeOptions": {"configProperties": {"System.Globalization.Invariant": True}}}, f)


class Server:
    """A language-server session: JSON-RPC messages framed by Content-Length."""

    def __init__(self):
        self.proc = subprocess.Popen(
            [BIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.inbox = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send("initialize", {"processId": os.getpid(), "rootPath": None, "capabilities": {}}, 1)

    def _read(self):
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                line = line.decode().strip()
                if not line:
                    break
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-length":
                    length = int(value)
            if length is not None:
                self.inbox.put(json.loads(out.read(length)))

    def send(self, method, params, id_=None):
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if id_ is not None:
            message["id"] = id_
        body = json.dumps(message).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def diagnostics(self, uri, text):
        """The diagnostics published for a document, or None (no answer)."""
        self.send(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "sql", "version": 1, "text": text}},
        )
        deadline = time.time() + ANSWER_WITHIN
        while time.time() < deadline:
            try:
                m = self.inbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == uri:
                return m["params"]["diagnostics"]
        return None

    def close(self):
        self.proc.kill()


def batch_names(lines, path):
    names, current = [], None
    for n, line in enumerate(lines, 1):
        if line.startswith("-- @@ "):
            current = line[6:].strip()
        names.append(f"{path}: {current}" if current else f"{path}:{n}")
    return names


def main(argv):
    if len(argv) < 3 or argv[0] != "--canary":
        print(__doc__)
        return 2
    canary, files = argv[1], argv[2:]
    try:
        install()
    except Exception as e:  # noqa: BLE001 - any failure to install is reported
        print(f"tsql_parse: cannot install {WHEEL}: {e}")
        return 2
    server = Server()
    try:
        found = server.diagnostics("file:///canary.sql", open(canary, encoding="utf-8").read())
        if found is None:
            print("tsql_parse: the parser did not answer")
            return 2
        if not found:
            print(f"tsql_parse: FAIL the canary {canary} parsed: the check is not checking")
            return 1
        errors, batches = 0, 0
        for i, path in enumerate(files):
            text = open(path, encoding="utf-8").read()
            lines = text.split("\n")
            batches += sum(1 for l in lines if l.strip().upper() == "GO")
            found = server.diagnostics(f"file:///doc{i}.sql", text)
            if found is None:
                print(f"tsql_parse: the parser did not answer for {path}")
                return 2
            names = batch_names(lines, path)
            for d in found:
                line = d["range"]["start"]["line"]
                col = d["range"]["start"]["character"]
                where = names[line] if line < len(names) else path
                snippet = lines[line][max(0, col - 60):col + 40] if line < len(lines) else ""
                print(f"[{where}] {d['message']}\n    {snippet}")
                errors += 1
        print(f"tsql_parse: {len(files)} files, {batches} batches, {errors} syntax errors; the canary failed as it must")
        return 1 if errors else 0
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
