"""DNS and TLS for benches/heldout.py: trawl's DNS and TLS events read as the Suricata eve
records and Zeek dns.log/ssl.log rows they stand for, and those expectations scored."""
import os
import re

from heldout_match import (OPS, compare, get, run_pcap, same, suricata_yaml, zeek_rows,
                           zeek_unescape)


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
    return run_pcap(trawl, ["-c", cfg, pcap])


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
