#!/usr/bin/env python3
"""Scores `trawl pcap` on captures held out of the repository: suricata-verify tests (the HTTP
event filters, the flow packet-count filters and the DNS and TLS filters of each test.yaml) and
Zeek btests (the rows of each http.log, dns.log and ssl.log baseline). Opt-in: the suites are
GPL data kept outside the repository.

Usage: benches/heldout.py [--trawl BIN] [--suricata DIR] [--zeek DIR] [--misses] [--kinds K,..]
  --kinds         what to score: http, flow, dns, tls (default all; DNS and TLS are described
                  at DNS_KEYS in heldout_dnstls.py and in benches/README.md, "Held-out DNS and TLS")
  --suricata DIR  folders DIR/<test>/ with input.pcap and test.yaml (env HELDOUT_SURICATA)
  --zeek DIR      folders DIR/<test>/ with input.pcap and http.log (env HELDOUT_ZEEK)
  --trawl BIN     the binary to run (env TRAWL, default target/release/trawl)
  --misses        list every expectation that did not match, with what trawl emitted
  --json FILE     write every expectation and its outcome as JSON (to compare two runs)

Matching follows suricata-verify's own runner (run.py, FilterCheck): a filter passes when the
number of events matching every key of `match` equals `count`; keys ending in __gt/__gte/__lt/
__lte/__find/__contains/__startswith/__endswith, has-key and not-has-key as there. Keys are
mapped to trawl's ECS fields as ../shared/README.md does (the table there and below); a key
with no ECS counterpart (alert, tx_id, http2 settings...) is left out of the match, as in
tests/wire/pcap_suricata.rs; a filter none of whose keys has one is reported apart ("unmappable"),
since it would count every event. Filters for older Suricata versions (`requires: lt-version`) are
skipped, and so is a test that requires one. Every HTTP and flow filter of a test that runs
Suricata in a mode trawl does not have is scored twice: counted in the raw score, set apart
("policy") in the adjusted one, whatever its count and whether trawl matches it. The criterion,
read from the test's args, suricata.yaml and rules files only (never its name): Suricata runs as an IPS
(`--simulate-ips`), loads firewall rules (a top-level `firewall:`), sets an exception policy
(a top-level `exception-policy:`, or any `*-policy` setting given with `--set`), has
mid-stream pick-up turned off by `--set stream.midstream=false`, or has a rule in its own
`*.rules` that turns logging off for the transactions it matches (`config:logging disable`). In those modes Suricata drops,
splits or leaves out what a passive sensor reports as it was on the wire.
A test that keys flows without the VLAN (`--set vlan.use-for-tracking=false` in its args, or
`vlan: {use-for-tracking: false}` in its suricata.yaml) runs trawl with `--key-by-vlan false`,
trawl's counterpart of that setting.
Zeek rows match one trawl HTTP event each (one-to-one): endpoints, method, host (Zeek keeps
port left out), uri (Zeek logs it percent-decoded), user agent, status (Zeek's version is the
reply's, trawl's the request's: not compared); a btest whose script rewrites log records
(HTTP::log_policy) is skipped.
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.parse

try:
    import yaml
except ImportError:
    sys.exit("needs PyYAML (python3-yaml)")

from heldout_dnstls import score_dns_tls, zeek_dns_tls
from heldout_match import (FLOW_FIELDS, HTTP_FIELDS, compile_filter, flatten, get, holds,
                           policy_mode, run_pcap, same, tracks_vlan, zeek_rows, zeek_unescape)


def run_trawl(trawl, pcap, extra=()):
    return run_pcap(trawl, ["--only", "flows,http,http2", *extra, pcap])


def split(events):
    """HTTP events (HTTP/1 and HTTP/2, as Suricata's event_type http) and one flow event per
    flow (the last one trawl wrote for it)."""
    http = [e for e in events if get(e, "event.dataset") in ("http", "http2")]
    flows = {}
    for e in events:
        if get(e, "event.dataset") == "flow":
            flows[get(e, "flow.id") or id(e)] = e
    return http, list(flows.values())


def suricata(root, trawl, results, kinds, tmp):
    tests = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "test.yaml")))
    captures = {"http": set(), "flow": set(), "dns": set(), "tls": set()}
    for name in tests:
        d = os.path.join(root, name)
        with open(os.path.join(d, "test.yaml")) as f:
            y = yaml.safe_load(f)
        if "lt-version" in (y.get("requires") or {}):
            continue
        args = " ".join(str(a) for a in y.get("args") or [])
        policy = policy_mode(d, args)
        filters = []
        for check in y.get("checks") or []:
            f = check.get("filter") if isinstance(check, dict) else None
            if not f or "lt-version" in (f.get("requires") or {}):
                continue
            m = {}
            flatten("", f.get("match") or {}, m)
            if m.get("event_type") == "http":
                kind = "http"
            elif m.get("event_type") == "flow" and ("flow.pkts_toserver" in m or "flow.pkts_toclient" in m):
                kind = "flow"
            elif m.get("event_type") in ("dns", "tls"):
                kind = m["event_type"]
            else:
                continue
            if kind in kinds:
                filters.append((kind, m, f.get("count")))
        wire = [x for x in filters if x[0] in ("dns", "tls")]
        filters = [x for x in filters if x[0] not in ("dns", "tls")]
        if wire:
            score_dns_tls(name, d, trawl, wire, policy, captures, results, tmp, args)
        if not filters:
            continue
        extra = () if tracks_vlan(d, args) else ("--key-by-vlan", "false")
        events, err = run_trawl(trawl, os.path.join(d, "input.pcap"), extra)
        http, flows = split(events or [])
        for i, (kind, m, count) in enumerate(filters):
            captures[kind].add(name)
            conds, dropped = compile_filter(m, HTTP_FIELDS if kind == "http" else FLOW_FIELDS)
            pool = http if kind == "http" else flows
            n = sum(1 for e in pool if holds(e, conds))
            ok = events is not None and (n == count if count is not None else n > 0)
            if dropped and not conds:
                # Only keys trawl has no counterpart for (HTTP/2 stream-0 settings, alerts...):
                # counting every event would judge another filter than the one written.
                status = "unmappable"
            else:
                status = "ok" if ok else "miss"
            results.append({
                "suite": "suricata", "kind": kind, "test": name, "index": i, "status": status,
                "policy": policy,
                "count": count, "got": n, "match": {k: str(v) for k, v in m.items()},
                "dropped": dropped, "emitted": len(pool), "crash": events is None and err,
            })
    return captures


# Zeek's `version` is the reply's (trawl's http.version is the request's): not compared.
ZEEK_FIELDS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "method", "host", "uri",
               "user_agent", "status_code")


def zeek_matches(row, ev):
    for k in ZEEK_FIELDS:
        want = row.get(k)
        if want is None:
            continue
        want = zeek_unescape(want)
        field = {"id.orig_h": "source.ip", "id.orig_p": "source.port", "id.resp_h": "destination.ip",
                 "id.resp_p": "destination.port", "method": "http.request.method",
                 "host": "url.domain", "uri": "url.original", "version": "http.version",
                 "user_agent": "user_agent.original", "status_code": "http.response.status_code"}[k]
        have = get(ev, field)
        if want == "-":
            if have not in (None, ""):
                return False
            continue
        if want == "(empty)":
            want = ""
        if k == "status_code" and want == "0":
            # Zeek's 0 is an HTTP/0.9 reply: a response with no status line.
            if get(ev, "http.response") is None or have is not None:
                return False
            continue
        if have is None:
            return False
        if k in ("id.orig_h", "id.resp_h"):
            if not same(field, have, want):
                return False
        elif k == "host":
            # Zeek logs the Host header as sent (port included); trawl the name alone.
            host = re.sub(r":[0-9]*$", "", want.lower()) if not want.endswith("]") else want.lower()
            if str(have).lower() != host:
                return False
        elif k == "uri":
            h = str(have)
            raw = urllib.parse.unquote_to_bytes(h.encode("utf-8"))
            want = redacted_like(want, h)
            if h != want and raw != want.encode("latin-1", errors="replace"):
                return False
        elif str(have) != want:
            return False
    return True


def redacted_like(want, have):
    """`want` with the values trawl redacted (`redact_query_params`, on by default) redacted
    too, so a URI is scored on its decoding, not on that choice."""
    if "=REDACTED" not in have or "?" not in want:
        return want
    names = {p.split("=", 1)[0].lower() for p in have.split("?", 1)[1].split("&")
             if p.endswith("=REDACTED")}
    path, query = want.split("?", 1)
    parts = [p.split("=", 1)[0] + "=REDACTED" if "=" in p and p.split("=", 1)[0].lower() in names
             else p for p in query.split("&")]
    return path + "?" + "&".join(parts)


def zeek(root, trawl, results):
    tests = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "http.log")))
    captures = set()
    for name in tests:
        d = os.path.join(root, name)
        rows = zeek_rows(os.path.join(d, "http.log"))
        with open(os.path.join(d, "test.zeek"), errors="replace") as f:
            # A test whose script rewrites log records (anonymised addresses) is not comparable.
            if "log_policy" in f.read():
                continue
        if not rows:
            continue
        captures.add(name)
        events, err = run_trawl(trawl, os.path.join(d, "input.pcap"))
        http, _ = split(events or [])
        used = set()
        for i, row in enumerate(rows):
            if all(row.get(k) == "-" for k in ("method", "uri", "status_code")):
                # Zeek logs an empty record after an HTTP/0.9 reply: no transaction on the wire.
                hit = next((j for j, e in enumerate(http) if j not in used and zeek_matches(row, e)), None)
                results.append({"suite": "zeek", "kind": "zeek", "test": name, "index": i,
                                "status": "ok" if hit is not None else "miss",
                                "policy": "zeek-empty-record", "match": {}, "emitted": len(http)})
                continue
            hit = next((j for j, e in enumerate(http) if j not in used and zeek_matches(row, e)), None)
            if hit is not None:
                used.add(hit)
            results.append({
                "suite": "zeek", "kind": "zeek", "test": name, "index": i,
                "status": "ok" if hit is not None else "miss",
                "match": {k: row.get(k) for k in ZEEK_FIELDS}, "emitted": len(http),
                "crash": events is None and err,
            })
    return captures


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trawl", default=os.environ.get("TRAWL", "target/release/trawl"))
    p.add_argument("--suricata", default=os.environ.get("HELDOUT_SURICATA"))
    p.add_argument("--zeek", default=os.environ.get("HELDOUT_ZEEK"))
    p.add_argument("--misses", action="store_true")
    p.add_argument("--json")
    p.add_argument("--kinds", default="http,flow,dns,tls",
                   help="what to score (comma-separated): http, flow, dns, tls")
    a = p.parse_args()
    kinds = set(a.kinds.split(","))
    tmp = tempfile.mkdtemp(prefix="heldout-")
    if not a.suricata and not a.zeek:
        sys.exit("give --suricata DIR and/or --zeek DIR (see the docstring)")
    if not os.access(a.trawl, os.X_OK):
        sys.exit(f"no trawl binary at {a.trawl} (cargo build --release)")
    results, caps = [], {}
    if a.suricata:
        c = suricata(a.suricata, a.trawl, results, kinds, tmp)
        caps.update({k: v for k, v in c.items() if k in kinds})
    if a.zeek:
        if "http" in kinds:
            caps["zeek"] = zeek(a.zeek, a.trawl, results)
        caps.update({k: v for k, v in zeek_dns_tls(a.zeek, a.trawl, results, kinds, tmp).items()
                     if k.removeprefix("zeek-") in kinds})
    shutil.rmtree(tmp, ignore_errors=True)
    titles = {"http": "suricata-verify HTTP events", "flow": "suricata-verify flow packet counts",
              "zeek": "Zeek http.log rows", "dns": "suricata-verify DNS events",
              "tls": "suricata-verify TLS events", "zeek-dns": "Zeek dns.log rows",
              "zeek-tls": "Zeek ssl.log rows"}
    print("| expectations | captures | raw: expectations | raw: matched | raw % |"
          " adjusted: expectations | adjusted: matched | adjusted % | apart: policy (matched) |"
          " apart: unmappable |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("http", "flow", "zeek", "dns", "tls", "zeek-dns", "zeek-tls"):
        if kind not in caps:
            continue
        rs = [r for r in results if r["kind"] == kind]
        raw = [r for r in rs if r["status"] in ("ok", "miss")]
        adjusted = [r for r in raw if not r.get("policy")]
        policy = [r for r in raw if r.get("policy")]
        unmappable = sum(r["status"] == "unmappable" for r in rs)
        cells = []
        for scored in (raw, adjusted):
            ok = sum(r["status"] == "ok" for r in scored)
            cells.append(f"{len(scored)} | {ok} | {100.0 * ok / max(len(scored), 1):.1f}")
        print(f"| {titles[kind]} | {len(caps[kind])} | {cells[0]} | {cells[1]} |"
              f" {len(policy)} ({sum(r['status'] == 'ok' for r in policy)}) | {unmappable} |")
    if a.misses:
        for r in results:
            if r["status"] != "ok":
                status = f"policy({r['policy']}) {r['status']}" if r.get("policy") else r["status"]
                print(f"{status}: {r['kind']} {r['test']}#{r['index']}: want {r.get('count')} "
                      f"got {r.get('got')} of {r['emitted']}: {r['match']}"
                      + (f" (ignored {r['dropped']})" if r.get("dropped") else "")
                      + (f" CRASH {r['crash']}" if r.get("crash") else ""))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
