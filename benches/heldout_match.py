"""What a suricata-verify filter or a Zeek log row asks of trawl's events, for benches/heldout.py:
the ECS counterparts of Suricata's keys, the filter operators as suricata-verify's runner reads
them, and the Suricata settings that put a test apart ("policy")."""
import ipaddress
import json
import os
import re
import subprocess

import yaml


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


def run_pcap(trawl, args):
    """`trawl pcap ARGS`: its events, and its standard error (None and the error's tail when it
    failed other than on a damaged capture, exit 1)."""
    out = subprocess.run([trawl, "pcap", *args], capture_output=True, timeout=600)
    if out.returncode not in (0, 1):
        return None, out.stderr.decode(errors="replace")[-400:]
    events = []
    for line in out.stdout.decode(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return events, out.stderr.decode(errors="replace")
