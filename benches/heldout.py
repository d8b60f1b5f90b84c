#!/usr/bin/env python3
"""Scores `trawl pcap` on captures held out of the repository: suricata-verify tests (the HTTP
event filters, the flow packet-count filters and the DNS and TLS filters of each test.yaml) and
Zeek btests (the rows of each http.log, dns.log and ssl.log baseline). Opt-in: the suites are
GPL data kept outside the repository.

Usage: benches/heldout.py [--trawl BIN] [--suricata DIR] [--zeek DIR] [--misses] [--kinds K,..]
  --kinds         what to score: http, flow, dns, tls (default all; DNS and TLS are described
                  at DNS_KEYS below and in benches/README.md, "Held-out DNS and TLS")
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
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

try:
    import yaml
except ImportError:
    sys.exit("needs PyYAML (python3-yaml)")

# suricata-verify key -> trawl (ECS) field, for HTTP and for flow events.
HTTP_FIELDS = {
    "http.http_method": "http.request.method",
    "http.url": "url.original",
    "http.hostname": "url.domain",
    "http.status": "http.response.status_code",
    "http.http_user_agent": "user_agent.original",
    "http.protocol": "http.version",
    "src_ip": "source.ip",
    "src_port": "source.port",
    "dest_ip": "destination.ip",
    "dest_port": "destination.port",
    "proto": "network.transport",
}
FLOW_FIELDS = {
    "spi": "esp.spi",
    "flow.pkts_toserver": "source.packets",
    "flow.pkts_toclient": "destination.packets",
    "src_ip": "source.ip",
    "src_port": "source.port",
    "dest_ip": "destination.ip",
    "dest_port": "destination.port",
    "proto": "network.transport",
}
OPS = ("__gt", "__gte", "__lt", "__lte", "__find", "__contains", "__startswith", "__endswith")


def flatten(prefix, y, out):
    if isinstance(y, dict):
        for k, v in y.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = y


def get(ev, path):
    for k in path.split("."):
        if not isinstance(ev, dict) or k not in ev:
            return None
        ev = ev[k]
    return ev


def same(field, have, want):
    """Whether trawl's value equals suricata-verify's, modulo representation."""
    if have is None:
        return False
    if field.endswith(".ip"):
        try:
            return ipaddress.ip_address(str(have)) == ipaddress.ip_address(str(want))
        except ValueError:
            return False
    if field == "http.version":
        w = str(want)
        return w.removeprefix("HTTP/") == str(have)
    if field == "network.transport":
        w = str(want).lower()
        return str(have).lower() in (w, {"ipv6-icmp": "ipv6-icmp", "icmpv6": "ipv6-icmp"}.get(w, w))
    return str(have) == str(want)


def compile_filter(match, fields):
    """The conditions of a filter over trawl events, and the keys left out (no ECS counterpart)."""
    conds, dropped = [], []
    for key, want in match.items():
        if key == "event_type":
            continue
        if key in ("has-key", "not-has-key"):
            for item in want if isinstance(want, list) else [want]:
                if item in fields:
                    conds.append((key, fields[item], None))
                else:
                    dropped.append(f"{key}:{item}")
            continue
        op = None
        base = key
        for o in OPS:
            if key.endswith("." + o):
                op, base = o, key[: -len(o) - 1]
        if base in fields:
            conds.append((op or "eq", fields[base], want))
        else:
            dropped.append(key)
    return conds, dropped


def compare(op, have, want):
    """suricata-verify's ordering and string operators (`__gt`... `__endswith`) on a value
    that is there."""
    if op in ("__gt", "__gte", "__lt", "__lte"):
        return isinstance(have, (int, float)) and {
            "__gt": have > want, "__gte": have >= want,
            "__lt": have < want, "__lte": have <= want}[op]
    if op in ("__find", "__contains"):
        return str(want) in str(have)
    if op == "__startswith":
        return str(have).startswith(str(want))
    return str(have).endswith(str(want))


def holds(ev, conds):
    for op, field, want in conds:
        have = get(ev, field)
        if op == "has-key":
            ok = have is not None
        elif op == "not-has-key":
            ok = have is None
        elif op == "eq":
            ok = same(field, have, want)
        elif have is None:
            ok = False
        else:
            ok = compare(op, have, want)
        if not ok:
            return False
    return True


def policy_mode(d, args):
    """The mode trawl does not have that the test runs Suricata in (see the docstring), or
    None. From the test's args, suricata.yaml and rules only."""
    if "simulate-ips" in args:
        return "ips"
    if "midstream=false" in args:
        return "no-midstream"
    if re.search(r"-policy=", args):
        return "exception-policy"
    cfg = suricata_yaml(d)
    if cfg is not None:
        if isinstance(cfg, dict):
            if cfg.get("firewall") is not None:
                return "firewall"
            # Top level only: `exception-policy: true` under an eve `flow` output is logging.
            if isinstance(cfg.get("exception-policy"), str):
                return "exception-policy"
    if rule_driven_logging(d):
        return "rule-logging"
    return None


def rule_driven_logging(d):
    """Whether the test's rules turn Suricata's logging of matching transactions off
    (`config:logging disable`): what it then logs depends on its signatures, not on the wire."""
    for name in sorted(os.listdir(d)):
        if not name.endswith(".rules"):
            continue
        with open(os.path.join(d, name), errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line.startswith("#") and re.search(r"\bconfig\s*:\s*logging\s+disable", line):
                    return True
    return False


def suricata_yaml(d):
    """The test's own suricata.yaml, parsed ({} when unreadable), or None when it has none."""
    path = os.path.join(d, "suricata.yaml")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        try:
            return yaml.safe_load(f) or {}
        except yaml.YAMLError:
            return {}


def tracks_vlan(d, args):
    """Whether the test keys flows by VLAN (Suricata's `vlan.use-for-tracking`, true by
    default), from its args and suricata.yaml."""
    m = re.search(r"(?:^|\s)vlan\.use-for-tracking=(\S+)", args)
    if m:
        return m.group(1).lower() not in ("false", "no", "0", "off")
    cfg = suricata_yaml(d)
    if cfg is not None:
        vlan = cfg.get("vlan") if isinstance(cfg, dict) else None
        if isinstance(vlan, dict) and vlan.get("use-for-tracking") is False:
            return False
    return True


def run_trawl(trawl, pcap, extra=()):
    out = subprocess.run([trawl, "pcap", "--only", "flows,http,http2", *extra, pcap],
                         capture_output=True, timeout=600)
    if out.returncode not in (0, 1):
        return None, out.stderr.decode(errors="replace")[-400:]
    events = []
    for line in out.stdout.decode(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events, out.stderr.decode(errors="replace")


# DNS and TLS are read with a pipeline whose packet input reports both, TLS recognised by its
# hello on any TCP port (`ports: []`, as Suricata's and Zeek's detection by content) and DNS on
# its port 53 (both peers' default), plus flows (to tell UDP connections from TCP ones).
DNS_TLS_PIPELINE = """inputs:
  wire:
    type: packet
    capture: { interfaces: ["lo"] }
    flows: {}
    protocols:
      dns: { ports: %s }
      tls: { ports: [] }
      http2: {}
outputs:
  console: { type: stdout }
http: { enabled: false }
data_dir: %s
"""


def run_trawl_dns_tls(trawl, pcap, tmp, dns_ports=(53,)):
    ports = sorted(set(dns_ports))
    cfg = os.path.join(tmp, "pipeline-%s.yaml" % "-".join(map(str, ports)))
    if not os.path.exists(cfg):
        os.makedirs(os.path.join(tmp, "data"), exist_ok=True)
        with open(cfg, "w") as fh:
            fh.write(DNS_TLS_PIPELINE % (ports, os.path.join(tmp, "data")))
    out = subprocess.run([trawl, "pcap", "-c", cfg, pcap], capture_output=True, timeout=600)
    if out.returncode not in (0, 1):
        return None, out.stderr.decode(errors="replace")[-400:]
    events = []
    for line in out.stdout.decode(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events, out.stderr.decode(errors="replace")


def split(events):
    """HTTP events (HTTP/1 and HTTP/2, as Suricata's event_type http) and one flow event per
    flow (the last one trawl wrote for it)."""
    http = [e for e in events if get(e, "event.dataset") in ("http", "http2")]
    flows = {}
    for e in events:
        if get(e, "event.dataset") == "flow":
            flows[get(e, "flow.id") or id(e)] = e
    return http, list(flows.values())


# --- DNS and TLS: trawl's one event per DNS transaction / TLS handshake seen as the events
# Suricata writes for it (a DNS query and an answer apart), keyed by suricata-verify's names.

# Keys with an ECS counterpart in trawl (`[]` stands for any index, <T> for any type): a key
# matching none is left out of the match; one matching but absent from an event fails there.
DNS_KEYS = [r"src_ip", r"src_port", r"dest_ip", r"dest_port", r"proto", r"community_id",
            r"dns\.type", r"dns\.id", r"dns\.rrname", r"dns\.rrtype", r"dns\.rcode", r"dns\.opcode",
            r"dns\.queries\[0\]\.(rrname|rrtype)", r"dns\.flags", r"dns\.(qr|aa|tc|rd|ra)",
            r"dns\.answers\[\d+\]\.(rrname|rrtype|ttl|rdata)",
            r"dns\.answers\[\d+\]\.srv\.(priority|weight|port|name)",
            r"dns\.grouped\.[A-Z0-9]+\[\d+\]", r"dns\.answers",
            r"dns", r"dns\.rrname"]
TLS_KEYS = [r"src_ip", r"src_port", r"dest_ip", r"dest_port", r"proto", r"community_id",
            r"tls\.sni", r"tls\.version", r"tls\.subject", r"tls\.issuerdn", r"tls\.serial",
            r"tls\.notbefore", r"tls\.notafter", r"tls\.fingerprint", r"tls\.ja3\.hash",
            r"tls\.ja3s\.hash", r"tls\.ja4", r"tls\.client_alpns\[\d+\]", r"tls\.server_alpns\[\d+\]",
            r"tls\.session_resumed", r"tls\.subjectaltname\[\d+\]", r"tls\.subjectaltname",
            r"tls\.client\.(serial|notbefore|notafter|subject|issuerdn|fingerprint)"]
# Set for a key whose value trawl's event does not tell for this view (a query's own flags
# once a response came: the event carries the response's): the key is not judged there.
UNTOLD = object()
SWAPPED = "<either direction>"
SWAPS = (("src_ip", "dest_ip"), ("src_port", "dest_port"))
# The DNS header's flag bits (RFC 1035 4.1.1, RFC 4035 for AD and CD).
FLAG_BITS = {"AA": 0x400, "TC": 0x200, "RD": 0x100, "RA": 0x80, "AD": 0x20, "CD": 0x10}
OPCODES = {"QUERY": 0, "IQUERY": 1, "STATUS": 2, "NOTIFY": 4, "UPDATE": 5, "DSO": 6}
RCODES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN",
          "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"]


def endpoints(ev):
    return {"src_ip": get(ev, "source.ip"), "src_port": get(ev, "source.port"),
            "dest_ip": get(ev, "destination.ip"), "dest_port": get(ev, "destination.port"),
            "proto": str(get(ev, "network.transport") or "").upper(),
            "community_id": get(ev, "network.community_id")}


def txt_strings(data):
    """The strings of trawl's TXT presentation (`"a" "b"`, RFC 1035 5.1 escapes)."""
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', data):
        out.append(re.sub(r"\\(\d{3}|.)", lambda e: chr(int(e.group(1))) if e.group(1).isdigit()
                          else e.group(1), m.group(1)))
    return out


def rdata_views(a):
    """Suricata's rdata for one trawl answer (`data` in presentation format)."""
    data, t = str(a.get("data", "")), a.get("type")
    if t == "TXT":
        return "".join(txt_strings(data))
    if t == "MX":
        return data.split(" ", 1)[-1]
    m = re.fullmatch(r"\\# (\d+) ?([0-9a-fA-F]*)", data)
    if m:
        # Unparsed types: Suricata logs the bytes as text, those past ASCII as \xNN.
        return "".join(chr(b) if b < 0x80 else f"\\x{b:02x}" for b in bytes.fromhex(m.group(2)))
    return data


def dns_views(ev):
    """The Suricata DNS events one trawl transaction stands for: the query (unless trawl saw
    only the response) and the answer (when it saw one)."""
    views = []
    common = endpoints(ev)
    q = get(ev, "dns.question") or {}
    flags = get(ev, "dns.header_flags") or []
    opcode = OPCODES.get(get(ev, "dns.op_code"), UNTOLD)
    base = dict(common)
    base["dns"] = True
    base["dns.id"] = get(ev, "dns.id")
    base["dns.opcode"] = opcode
    if q:
        base["dns.rrname"] = q.get("name")
        base["dns.rrtype"] = q.get("type")
        base["dns.queries[0].rrname"] = q.get("name")
        base["dns.queries[0].rrtype"] = q.get("type")
    answered = get(ev, "dns.type") == "answer"
    if get(ev, "event.reason") != "request_missing":
        v = dict(base)
        v["dns.type"] = "query"
        if answered:
            # The event's flags are the response's; RD is copied from the query (RFC 1035 4.1.1).
            v.update({"dns.flags": UNTOLD, "dns.aa": UNTOLD, "dns.tc": UNTOLD, "dns.ra": UNTOLD,
                      "dns.rd": "RD" in flags})
        else:
            bits = sum(FLAG_BITS[f] for f in flags if f in FLAG_BITS)
            v["dns.flags"] = UNTOLD if opcode is UNTOLD else f"{(opcode << 11) | bits:x}"
            for f in ("AA", "TC", "RD", "RA"):
                v["dns." + f.lower()] = f in flags
        views.append(v)
    if answered:
        v = dict(base)
        v["dns.type"] = "answer"
        v["dns.qr"] = True
        rcode = get(ev, "dns.response_code")
        v["dns.rcode"] = rcode
        bits = sum(FLAG_BITS[f] for f in flags if f in FLAG_BITS)
        if opcode is UNTOLD or rcode not in RCODES:
            v["dns.flags"] = UNTOLD
        else:
            v["dns.flags"] = f"{0x8000 | (opcode << 11) | bits | RCODES.index(rcode):x}"
        for f in ("AA", "TC", "RD", "RA"):
            v["dns." + f.lower()] = f in flags
        answers = get(ev, "dns.answers") or []
        if answers:
            v["dns.answers"] = answers
        grouped = {}
        # Suricata lists each string of a TXT record as an answer of its own.
        answers = [dict(a, data=f'"{x}"') if a.get("type") == "TXT" else a for a in answers
                   for x in (txt_strings(str(a.get("data", ""))) if a.get("type") == "TXT" else [None])]
        for i, a in enumerate(answers):
            p = f"dns.answers[{i}]."
            v[p + "rrname"] = a.get("name")
            v[p + "rrtype"] = a.get("type")
            v[p + "ttl"] = a.get("ttl")
            rdata = rdata_views(a)
            v[p + "rdata"] = rdata
            if a.get("type") == "SRV":
                parts = str(a.get("data", "")).split(" ")
                if len(parts) == 4:
                    for k, x in zip(("priority", "weight", "port", "name"), parts):
                        v[p + "srv." + k] = x
            grouped.setdefault(a.get("type"), []).append(rdata)
        for t, xs in grouped.items():
            for i, x in enumerate(xs):
                v[f"dns.grouped.{t}[{i}]"] = x
        # Suricata's eve DNS v3 writes a response with the packet's direction (server first),
        # v2 with the flow's: either is the same answer.
        v[SWAPPED] = True
        views.append(v)
    # Suricata's DoH logger writes one dns record per HTTP/2 exchange, the answer when there is
    # one; trawl's DoH event carries query and answer, so it is scored by its last view.
    if "dns_over_https" in (get(ev, "tags") or []):
        views = views[-1:]
    return views


def dn_suricata(dn):
    """trawl's RFC 4514 DN (last RDN first, `,` between) in Suricata's order and separator
    (as the certificate lists them, `, ` between)."""
    if dn is None:
        return None
    parts = re.split(r"(?<!\\),", str(dn))
    # PKCS #9 emailAddress: Suricata's `Email` (trawl wrote its OID before session 15).
    return ", ".join(p.replace("\\,", ",").replace(EMAIL_OID + "=", "Email=")
                     .replace("emailAddress=", "Email=") for p in reversed(parts))


EMAIL_OID = "1.2.840.113549.1.9.1"


def dn_types_lower(dn):
    """An RFC 4514 DN with its attribute types lower-cased: descriptors are case-insensitive
    (RFC 4512 1.4; trawl writes RFC 4514's `STREET`, OpenSSL and Zeek `street`)."""
    return ",".join(k.lower() + "=" + v if v is not None else k
                    for k, _, v in (p.partition("=") for p in re.split(r"(?<!\\),", dn)))


TLS_VERSIONS = {("tls", "1.0"): "TLSv1", ("tls", "1.1"): "TLS 1.1", ("tls", "1.2"): "TLS 1.2",
                ("tls", "1.3"): "TLS 1.3", ("ssl", "3.0"): "SSLv3", ("ssl", "2.0"): "SSLv2"}


def colon_hex(h, upper):
    if h is None:
        return None
    h = str(h).replace(":", "")
    h = h.upper() if upper else h.lower()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def tls_views(ev):
    v = endpoints(ev)
    t = get(ev, "tls") or {}
    client, server = t.get("client") or {}, t.get("server") or {}
    ver = TLS_VERSIONS.get((t.get("version_protocol"), t.get("version")), t.get("version"))
    offered = client.get("supported_versions") or []
    if ver is None and not t.get("cipher") and offered:
        # No ServerHello: Suricata's tls.version is then the client's hello version (the
        # highest offered); trawl keeps tls.version for a negotiated one and lists the offer.
        top = max(offered, key=lambda x: [int(n) for n in x.split(".")] if x[0].isdigit() else [0])
        ver = {"1.0": "TLSv1", "1.1": "TLS 1.1", "1.2": "TLS 1.2", "1.3": "TLS 1.3",
               "3.0": "SSLv3"}.get(top, top)
    draft = t.get("version_draft")
    if draft is not None:
        # Suricata names drafts before 16 alike.
        ver = f"TLS 1.3 draft-{draft}" if draft >= 16 else "TLS 1.3 draft-<16"
    elif t.get("version_variant") == "early_draft":
        # 0x0304 in the drafts' ServerHello: a draft before the 0x7f00 | n numbering.
        ver = "TLS 1.3 draft-<16"
    v.update({"tls.sni": client.get("server_name"), "tls.version": ver,
              "tls.subject": dn_suricata(server.get("subject")),
              "tls.issuerdn": dn_suricata(server.get("issuer")),
              "tls.serial": get(server, "x509.serial_number"),
              "tls.notbefore": (server.get("not_before") or "").removesuffix("Z") or None,
              "tls.notafter": (server.get("not_after") or "").removesuffix("Z") or None,
              "tls.fingerprint": colon_hex(get(server, "hash.sha1"), False),
              "tls.ja3.hash": client.get("ja3"), "tls.ja3s.hash": server.get("ja3s"),
              "tls.ja4": client.get("ja4"),
              "tls.session_resumed": True if t.get("resumed") else None,
              "tls.client.serial": get(client, "x509.serial_number"),
              "tls.client.notbefore": (client.get("not_before") or "").removesuffix("Z") or None,
              "tls.client.notafter": (client.get("not_after") or "").removesuffix("Z") or None,
              "tls.client.subject": dn_suricata(client.get("subject")),
              "tls.client.fingerprint": colon_hex(get(client, "hash.sha1"), False),
              "tls.client.issuerdn": dn_suricata(client.get("issuer"))})
    for i, a in enumerate(client.get("alpn") or []):
        v[f"tls.client_alpns[{i}]"] = a
    if t.get("next_protocol"):
        v["tls.server_alpns[0]"] = t["next_protocol"]
    sans = get(server, "x509.alternative_names") or []
    if sans:
        v["tls.subjectaltname"] = sans
    for i, a in enumerate(sans):
        v[f"tls.subjectaltname[{i}]"] = a
    return [{k: x for k, x in v.items() if x is not None}]


def serial_same(have, want):
    norm = lambda x: str(x).replace(":", "").upper().lstrip("0")
    return norm(have) == norm(want)


def view_same(key, have, want):
    if have is UNTOLD:
        return True
    if key.endswith("_ip"):
        return same("x.ip", have, want)
    if key == "dns.type":
        return {"query": "query", "request": "query", "answer": "answer",
                "response": "answer"}.get(str(want)) == have
    if key in ("tls.serial", "tls.client.serial"):
        return serial_same(have, want)
    if key == "dns.flags":
        return str(have).lower() == str(want).lower().lstrip("0") or str(have) == str(want)
    if isinstance(want, bool) or isinstance(have, bool):
        return str(have).lower() == str(want).lower()
    if key in ("dns.rrname", "dns.queries[0].rrname") and have == "." and want == "<root>":
        return True
    if re.fullmatch(r"dns\.(grouped\.AAAA\[\d+\]|answers\[\d+\]\.rdata)", key) and ":" in str(want):
        # Suricata writes IPv6 addresses in full (2001:4860:0000:...), trawl compressed.
        return same("x.ip", have, want) or str(have) == str(want)
    return str(have) == str(want)


def compile_view_filter(match, patterns):
    conds, dropped = [], []
    known = lambda k: any(re.fullmatch(p, k) for p in patterns)
    for key, want in match.items():
        if key == "event_type":
            continue
        if key in ("has-key", "not-has-key"):
            for item in want if isinstance(want, list) else [want]:
                (conds.append((key, item, None)) if known(item) else dropped.append(f"{key}:{item}"))
            continue
        op, base = None, key
        for o in OPS + ("__len",):
            if key.endswith("." + o):
                op, base = o, key[: -len(o) - 1]
        if known(base):
            conds.append((op or "eq", base, want))
        else:
            dropped.append(key)
    return conds, dropped


def view_holds(v, conds):
    if v.get(SWAPPED) and not view_holds_as(v, conds):
        v = dict(v)
        for a, b in SWAPS:
            v[a], v[b] = v.get(b), v.get(a)
    return view_holds_as(v, conds)


def view_holds_as(v, conds):
    for op, key, want in conds:
        have = v.get(key)
        if have is UNTOLD and op not in ("has-key", "not-has-key"):
            continue
        if op == "has-key":
            ok = have is not None
        elif op == "not-has-key":
            ok = have is None
        elif op == "eq":
            ok = have is not None and view_same(key, have, want)
        elif have is None:
            ok = False
        elif op == "__len":
            ok = len(have) == want
        else:
            ok = compare(op, have, want)
        if not ok:
            return False
    return True


def eve_dns_filtered(d):
    """Whether the test's suricata.yaml restricts what Suricata logs of DNS (`types:`, `query:`/
    `answer:`, `requests:`/`responses:` of its eve dns output): its count then depends on that
    setting, not on the wire (trawl reports every transaction)."""
    cfg = suricata_yaml(d)
    if not isinstance(cfg, dict):
        return False
    for out in cfg.get("outputs") or []:
        eve = out.get("eve-log") if isinstance(out, dict) else None
        for t in (eve or {}).get("types") or [] if isinstance(eve, dict) else []:
            dns = t.get("dns") if isinstance(t, dict) else None
            if isinstance(dns, dict) and (dns.get("types") or any(
                    dns.get(k) in (False, "no") for k in ("query", "answer", "requests", "responses"))):
                return True
    return False


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


def dns_ports(args):
    """Port 53 and the ports the test's args give Suricata's DNS detection
    (`--set app-layer.protocols.dns[.tcp|.udp].detection-ports.dp=N`): trawl's `dns.ports`."""
    ports = [53]
    for m in re.finditer(r"app-layer\.protocols\.dns(?:\.tcp|\.udp)?\.detection-ports\.dp=([0-9,]+)", args):
        ports += [int(x) for x in m.group(1).split(",") if x]
    return ports


def app_layer_disabled(d, proto):
    """Whether the test's suricata.yaml turns Suricata's parser for `proto` off
    (`app-layer.protocols.<proto>.enabled: no`) or off for one of its transports (`tcp:` or
    `udp:` `enabled: no`): the user's counterpart is not configuring that protocol in trawl,
    whose `ports` cover both transports alike."""
    cfg = suricata_yaml(d)
    p = get(cfg, f"app-layer.protocols.{proto}") if isinstance(cfg, dict) else None
    if not isinstance(p, dict):
        return False
    off = lambda x: x in (False, "no")
    sub = [p.get(t) for t in ("tcp", "udp") if isinstance(p.get(t), dict)]
    return off(p.get("enabled")) or any(off(x.get("enabled")) for x in sub)


def community_seed(d):
    """The community-id seed the test's eve output sets (0 when none)."""
    cfg = suricata_yaml(d)
    for out in (cfg or {}).get("outputs") or [] if isinstance(cfg, dict) else []:
        eve = out.get("eve-log") if isinstance(out, dict) else None
        if isinstance(eve, dict) and eve.get("community-id-seed") is not None:
            return int(eve["community-id-seed"])
    return 0


def score_dns_tls(name, d, trawl, filters, policy, captures, results, tmp, args):
    events, err = run_trawl_dns_tls(trawl, os.path.join(d, "input.pcap"), tmp, dns_ports(args))
    views = {"dns": [], "tls": []}
    for e in events or []:
        if get(e, "event.dataset") == "dns":
            views["dns"].extend(dns_views(e))
        elif get(e, "event.dataset") == "tls":
            views["tls"].extend(tls_views(e))
    dns_policy = policy or ("eve-dns-filter" if eve_dns_filtered(d) else None)
    seed = community_seed(d)
    for i, (kind, m, count) in enumerate(filters):
        captures[kind].add(name)
        keys = DNS_KEYS if kind == "dns" else TLS_KEYS
        if seed:
            # trawl's community_id has seed 0: a seeded one is another value for the same flow.
            keys = [k for k in keys if k != "community_id"]
        conds, dropped = compile_view_filter(m, keys)
        n = sum(1 for v in views[kind] if view_holds(v, conds))
        ok = events is not None and (n == count if count is not None else n > 0)
        if dropped and not conds:
            status = "unmappable"
        else:
            status = "ok" if ok else "miss"
        results.append({
            "suite": "suricata", "kind": kind, "test": name, "index": i, "status": status,
            "policy": ("app-layer-disabled" if app_layer_disabled(d, "dns" if kind == "dns" else "tls")
                       else dns_policy if kind == "dns" else policy),
            "count": count, "got": n, "match": {k: str(v) for k, v in m.items()},
            "dropped": dropped, "emitted": len(views[kind]), "crash": events is None and err,
        })


# Zeek's `version` is the reply's (trawl's http.version is the request's): not compared.
ZEEK_FIELDS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "method", "host", "uri",
               "user_agent", "status_code")


def zeek_unescape(s):
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def zeek_rows(path):
    fields, rows = None, []
    # latin-1 keeps every byte as one character, as the \\xNN escapes are decoded.
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#fields"):
                fields = line.split("\t")[1:]
            elif line and not line.startswith("#") and fields:
                rows.append(dict(zip(fields, line.split("\t"))))
    return rows


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


ZEEK_TLS_VERSIONS = {"TLSv10": ("tls", "1.0"), "TLSv11": ("tls", "1.1"), "TLSv12": ("tls", "1.2"),
                     "TLSv13": ("tls", "1.3"), "SSLv3": ("ssl", "3.0"), "SSLv2": ("ssl", "2.0")}


def zeek_ids(row, ev):
    for k, field in (("id.orig_h", "source.ip"), ("id.orig_p", "source.port"),
                     ("id.resp_h", "destination.ip"), ("id.resp_p", "destination.port")):
        want = row.get(k)
        if want is None or want == "-":
            continue
        have = get(ev, field)
        if have is None or not (same(field, have, want) if k.endswith("_h") else str(have) == want):
            return False
    return True


def zeek_answer(a):
    """trawl's answer as Zeek writes it in dns.log's `answers`, or None for a type whose Zeek
    form is not this simple (DNSSEC records, SOA...): then only their number is compared."""
    t, data = a.get("type"), str(a.get("data", ""))
    if t in ("A", "AAAA", "CNAME", "NS", "PTR", "DNAME"):
        return data
    if t == "MX":
        return data.split(" ", 1)[-1]
    if t in ("TXT", "SPF"):
        return " ".join(f"{t} {len(x.encode('latin-1', 'replace'))} {x}" for x in txt_strings(data))
    return None


def zeek_dns_matches(row, ev):
    if not zeek_ids(row, ev):
        return False
    checks = (("proto", "network.transport"), ("trans_id", "dns.id"))
    for k, field in checks:
        if row.get(k) not in (None, "-") and str(get(ev, field)).lower() != row[k].lower():
            return False
    q = row.get("query")
    if q not in (None, "-"):
        name = get(ev, "dns.question.name")
        if name is None and get(ev, "dns.answers"):
            # A response without a question (mDNS, RFC 6762 6): Zeek takes its first answer's.
            name = get(ev, "dns.answers")[0].get("name")
        # Zeek lowers the query (its original_case script keeps it as sent).
        want = zeek_unescape(q).lower()
        if name is None or (str(name).lower() != want and not (name == "." and want == "")):
            return False
    if row.get("qtype_name") not in (None, "-"):
        if get(ev, "dns.question.type") != row["qtype_name"] and not (
                row["qtype_name"] == "*" and get(ev, "dns.question.type") == "ANY"):
            return False
    rc = row.get("rcode_name")
    answered = get(ev, "dns.type") == "answer"
    if rc in (None, "-"):
        if answered:
            return False
    elif not answered or get(ev, "dns.response_code") != rc:
        return False
    ans = row.get("answers")
    if ans not in (None, "-") and answered:
        want = [zeek_unescape(x) for x in ans.split(",")] if ans != "(empty)" else []
        have = get(ev, "dns.answers") or []
        # Zeek's set separator also splits TXT strings holding a comma: compare joined.
        forms = [zeek_answer(a) for a in have]
        if all(f is not None for f in forms):
            # Zeek lowers names; trawl keeps them as sent.
            if ",".join(forms).lower() != ",".join(want).lower():
                return False
        elif len(have) != len(want):
            return False
    return True


def zeek_tls_matches(row, ev):
    if not zeek_ids(row, ev):
        return False
    t = get(ev, "tls") or {}
    v = row.get("version")
    have = (t.get("version_protocol"), t.get("version"))
    if t.get("version_draft") is not None:
        have = f"TLSv13-draft{t['version_draft']}"
    elif t.get("version_variant") == "experiment":
        # Zeek knows no name for the 0x7eNN experiment codes: `unknown-<code>`.
        have = "experiment"
    want = ZEEK_TLS_VERSIONS.get(v, v)
    if v and v.startswith("unknown-") and v[8:].isdigit() and int(v[8:]) >> 8 == 0x7E:
        want = "experiment"
    if v not in (None, "-") and want != have:
        return False
    c = row.get("cipher")
    if c not in (None, "-") and t.get("cipher") != c:
        return False
    sni = row.get("server_name")
    if sni not in (None, "-") and get(ev, "tls.client.server_name") != zeek_unescape(sni):
        return False
    for k, field in (("resumed", "tls.resumed"), ("established", "tls.established")):
        if row.get(k) in ("T", "F") and bool(get(ev, field)) != (row[k] == "T"):
            return False
    np = row.get("next_protocol")
    if np not in (None, "-") and get(ev, "tls.next_protocol") != zeek_unescape(np):
        return False
    for k, field in (("subject", "tls.server.subject"), ("issuer", "tls.server.issuer")):
        have = str(get(ev, field)).replace(EMAIL_OID + "=", "emailAddress=")
        if row.get(k) not in (None, "-") and dn_types_lower(have) != dn_types_lower(zeek_unescape(row[k])):
            return False
    return True


def zeek_udp(row, flows):
    """Whether the row's connection is UDP in trawl's flows (DTLS, QUIC): trawl follows TLS
    over TCP only, by design."""
    for f in flows:
        if get(f, "network.transport") == "udp" and {
                (str(get(f, "source.ip")), str(get(f, "source.port"))),
                (str(get(f, "destination.ip")), str(get(f, "destination.port")))} == {
                (row.get("id.orig_h"), row.get("id.orig_p")), (row.get("id.resp_h"), row.get("id.resp_p"))}:
            return True
    return False


def zeek_dns_tls(root, trawl, results, kinds, tmp):
    captures = {"zeek-dns": set(), "zeek-tls": set()}
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        logs = [(k, os.path.join(d, f)) for k, f in (("zeek-dns", "dns.log"), ("zeek-tls", "ssl.log"))
                if k.removeprefix("zeek-") in kinds and os.path.exists(os.path.join(d, f))]
        if not logs or not os.path.exists(os.path.join(d, "test.zeek")):
            continue
        with open(os.path.join(d, "test.zeek"), errors="replace") as f:
            if "log_policy" in f.read():
                continue
        events, err = run_trawl_dns_tls(trawl, os.path.join(d, "input.pcap"), tmp, ZEEK_DNS_PORTS)
        flows = [e for e in events or [] if get(e, "event.dataset") == "flow"]
        for kind, path in logs:
            rows = zeek_rows(path)
            if not rows:
                continue
            captures[kind].add(name)
            ds = "dns" if kind == "zeek-dns" else "tls"
            pool = [e for e in events or [] if get(e, "event.dataset") == ds]
            test = zeek_dns_matches if ds == "dns" else zeek_tls_matches
            used = set()
            for i, row in enumerate(rows):
                hit = next((j for j, e in enumerate(pool) if j not in used and test(row, e)), None)
                if hit is not None:
                    used.add(hit)
                policy = "tls-over-udp" if ds == "tls" and zeek_udp(row, flows) else None
                if ds == "dns" and "137" in (row.get("id.orig_p"), row.get("id.resp_p")):
                    # NetBIOS name service (RFC 1002): DNS's format with encoded names, which
                    # Zeek's DNS analyzer also reads; trawl's DNS is DNS alone.
                    policy = "netbios-ns"
                keys = ZEEK_DNS_KEYS if ds == "dns" else ZEEK_TLS_KEYS
                results.append({
                    "suite": "zeek", "kind": kind, "test": name, "index": i,
                    "status": "ok" if hit is not None else "miss", "policy": policy,
                    "match": {k: row.get(k) for k in keys}, "emitted": len(pool),
                    "crash": events is None and err,
                })
    return captures


# Zeek's DNS analyzer ports (base/protocols/dns/main.zeek): DNS, mDNS, LLMNR (and NetBIOS
# names, set apart below).
ZEEK_DNS_PORTS = (53, 5353, 5355)
ZEEK_DNS_KEYS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id", "query",
                 "qtype_name", "rcode_name", "answers")
ZEEK_TLS_KEYS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "version", "cipher",
                 "server_name", "resumed", "next_protocol", "established", "subject", "issuer")


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
