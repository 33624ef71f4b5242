#!/usr/bin/env python3
"""The shipped alerting rules against a real Prometheus scraping the demo:
CtsyncTableStaleOrError must fire for the table that stays in error, and no
table alert may fire for any other table.

usage: check_alerts.py PROMETHEUS_URL BROKEN_TABLE FLAKY_TABLE [TIMEOUT_SECONDS]
(the flaky table fails on purpose a few seconds at a time: its restart-loop
alert is expected; it must not be held stale or in error long enough to fire
that alert.)
"""
import json
import sys
import time
import urllib.request


def alerts(prom):
    with urllib.request.urlopen(f"{prom}/api/v1/alerts", timeout=10) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"alerts query failed: {body}")
    return body["data"]["alerts"]


def main():
    prom, broken, flaky = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 90
    with urllib.request.urlopen(f"{prom}/api/v1/rules", timeout=10) as resp:
        groups = json.load(resp)["data"]["groups"]
    loaded = sum(len(g["rules"]) for g in groups)
    print(f"alerts: {loaded} rules loaded")
    if loaded < 12:
        print("FAIL the shipped rules were not loaded")
        return 1
    deadline = time.time() + timeout
    while True:
        firing = [a for a in alerts(prom) if a["state"] == "firing"]
        ours = [a for a in firing
                if a["labels"].get("alertname") == "CtsyncTableStaleOrError"
                and a["labels"].get("table") == broken]
        if ours or time.time() > deadline:
            break
        time.sleep(2)
    wrong = [a["labels"] for a in firing
             if a["labels"].get("table") not in (None, broken)
             and not (a["labels"].get("table") == flaky
                      and a["labels"].get("alertname") == "CtsyncActorRestartLoop")]
    for a in firing:
        print(f"firing: {a['labels'].get('alertname')} {a['labels'].get('table', '')}")
    if not ours:
        print(f"FAIL CtsyncTableStaleOrError never fired for {broken}")
        return 1
    if wrong:
        print(f"FAIL alerts fired for healthy tables: {wrong}")
        return 1
    print(f"alerts: ok (CtsyncTableStaleOrError fires for {broken}, none for healthy tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
