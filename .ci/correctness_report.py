#!/usr/bin/env python3
"""Writes target/ci-artifacts/correctness.md, the correctness evidence of
one build, from what the CI steps left in target/ci-artifacts/: the
simulation's figures and coverage (simulation.md), the regression corpus
(corpus.md), the contract cases only a real server settles
(contract-real-server.md), the session-rule and parser results
(session-rules.txt, tsql-parse.txt) and the test run (tests.log).

usage: correctness_report.py [ARTIFACTS_DIR]   (default target/ci-artifacts)
Exit 1 when a part is missing: a report that silently drops a part is not
evidence.
"""
import datetime
import os
import re
import subprocess
import sys

DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "ci-artifacts")


def read(name):
    path = os.path.join(DIR, name)
    if not os.path.exists(path):
        sys.exit(f"correctness_report: {path} is missing (which CI step should have written it did not run)")
    with open(path, encoding="utf-8") as f:
        return f.read()


def lines_starting(text, prefix):
    return [line.strip() for line in text.splitlines() if line.strip().startswith(prefix)]


def main():
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip() or "unknown"
    tests = read("tests.log")
    passed = failed = ignored = 0
    for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", tests):
        passed += int(m.group(1))
        failed += int(m.group(2))
        ignored += int(m.group(3))
    skipped = lines_starting(tests, "e2e:")
    session = lines_starting(read("session-rules.txt"), "session rules:")
    parser = lines_starting(read("tsql-parse.txt"), "tsql_parse:")
    if not session or not parser:
        sys.exit("correctness_report: the session-rule or parser summary line is missing")
    out = [
        "# ctsync correctness report",
        "",
        f"Commit `{commit}`, written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by `.ci/run`.",
        "What each line means: docs/testing.md, \"The correctness report\".",
        "",
        "## Summary",
        "",
        f"- Tests (`cargo test --workspace --locked`): {passed} passed, {failed} failed, {ignored} ignored.",
        f"- Session rules over every statement the SQL Server adapter sends: {session[0].removeprefix('session rules: ')}.",
        f"- Microsoft's T-SQL parser: {parser[-1].removeprefix('tsql_parse: ')}.",
        "- Tests skipped without SQL Server:",
    ]
    out += [f"  - {line}" for line in skipped] or ["  - none"]
    out += [
        "",
        read("simulation.md").strip(),
        "",
        read("corpus.md").strip(),
        "",
        read("contract-real-server.md").strip(),
        "",
    ]
    path = os.path.join(DIR, "correctness.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    print(f"correctness report: {path} ({passed} tests passed, {failed} failed)")


if __name__ == "__main__":
    main()
