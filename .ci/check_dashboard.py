#!/usr/bin/env python3
"""Every PromQL expression of the Grafana dashboard must return at least one
series from a real Prometheus scraping ctsync (the demo in CI).

usage: check_dashboard.py PROMETHEUS_URL DASHBOARD_JSON [TIMEOUT_SECONDS]
Retries until every expression has data or the timeout passes (rates need a
few scrapes); exits 1 naming every panel that returned nothing.
"""
import json
import sys
import time
import urllib.parse
import urllib.request


def expressions(dashboard):
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                # Grafana's variables, as Grafana would fill them in.
                yield panel["title"], expr.replace("$__rate_interval", "1m")


def series(prom, expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {body}")
    return body["data"]["result"]


def main():
    prom, path = sys.argv[1].rstrip("/"), sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 90
    with open(path, encoding="utf-8") as f:
        exprs = list(expressions(json.load(f)))
    if not exprs:
        print(f"{path}: no PromQL expressions found")
        return 1
    deadline = time.time() + timeout
    while True:
        missing = []
        for title, expr in exprs:
            try:
                if not series(prom, expr):
                    missing.append((title, expr, "no series"))
            except Exception as e:  # noqa: BLE001 - report any failure by panel
                missing.append((title, expr, str(e)))
        if not missing or time.time() > deadline:
            break
        time.sleep(3)
    passed = len(exprs) - len(missing)
    for title, expr, why in missing:
        print(f"FAIL panel '{title}': {expr} -> {why}")
    for title, expr in exprs:
        if all(title != m[0] for m in missing):
            print(f"ok   panel '{title}'")
    print(f"dashboard: {passed} passed, {len(missing)} failed")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
