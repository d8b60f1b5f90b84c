#!/usr/bin/env python3
"""Builds the held-out data `benches/heldout.py` scores (OUT/sv and OUT/zeek) from git clones
of suricata-verify and Zeek, at the commits below, with the selection benches/README.md
describes ("Held-out captures", "Held-out DNS and TLS"). GPL data: it stays outside the
repository, and this rebuilds it when lost.

Usage: benches/heldout_data.py --suricata-verify GITDIR --zeek GITDIR --shared DIR --out OUT
  (GITDIR: a clone or bare mirror holding the pinned commit; DIR: ../shared, whose
  suricata-verify tests are left out; writes OUT/sv, OUT/zeek and prints what it kept and why
  it skipped the rest)
"""
import argparse, gzip, os, posixpath, re, shutil, subprocess, sys, yaml
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heldout_match import flatten

SV_C = "10a45e4"  # suricata-verify, 2026-08-21
ZK_C = "a13de64"  # Zeek, 2026-08-21
OUT = SV = ZK = None
SHARED = set()

def git(repo, *a, binary=False):
    r = subprocess.run(["git", "-C", repo, *a], capture_output=True)
    if r.returncode:
        return None
    return r.stdout if binary else r.stdout.decode(errors="replace")

def tree(repo, c, prefix):
    out = {}
    for line in git(repo, "ls-tree", "-r", "-l", c, prefix).splitlines():
        meta, path = line.split("\t", 1)
        _, typ, sha, size = meta.split()
        out[path] = (sha, size)
    return out

def blob(repo, files, path):
    if path not in files:
        return None
    return git(repo, "cat-file", "blob", files[path][0], binary=True)

def is_pointer(data):
    return data is not None and len(data) < 300 and (data.startswith(b"version https://git-lfs")
                                                     or b"git-annex" in data)

def kinds_of(y):
    ks = set()
    for check in y.get("checks") or []:
        f = check.get("filter") if isinstance(check, dict) else None
        if not f:
            continue
        m = {}
        flatten("", f.get("match") or {}, m)
        et = m.get("event_type")
        if et == "http":
            ks.add("http")
        elif et == "flow" and ("flow.pkts_toserver" in m or "flow.pkts_toclient" in m):
            ks.add("flow")
        elif et in ("dns", "tls"):
            ks.add(et)
    return ks

def suricata():
    root = os.path.join(OUT, "sv"); shutil.rmtree(root, ignore_errors=True); os.makedirs(root)
    files = tree(SV, SV_C, ".")
    tests = sorted(posixpath.dirname(p) for p in files if posixpath.basename(p) == "test.yaml")
    kept, skipped, shared = [], [], []
    for t in tests:
        y = yaml.safe_load(blob(SV, files, t + "/test.yaml")) or {}
        ks = kinds_of(y)
        if not ks:
            continue
        rel = t[len("tests/"):]
        name = rel.replace("/", "__")
        if posixpath.basename(t) in SHARED:
            shared.append(name); continue
        if "pcap" in y:
            if not y["pcap"]:
                skipped.append((name, "pcap: false")); continue
            pcap = posixpath.normpath(posixpath.join(t, str(y["pcap"])))
        else:
            own = [p for p in files if posixpath.dirname(p) == t and p.endswith((".pcap", ".pcapng"))]
            if len(own) != 1:
                skipped.append((name, f"{len(own)} pcaps in folder")); continue
            pcap = own[0]
        data = blob(SV, files, pcap)
        if data is None or is_pointer(data):
            skipped.append((name, f"pcap {pcap} absent ({'not in tree' if pcap not in files else 'blob missing/pointer'})")); continue
        d = os.path.join(root, name); os.makedirs(d)
        open(os.path.join(d, "input.pcap"), "wb").write(data)
        for p in files:
            b = posixpath.basename(p)
            if posixpath.dirname(p) == t and (b in ("test.yaml", "suricata.yaml") or b.endswith(".rules")):
                open(os.path.join(d, b), "wb").write(blob(SV, files, p))
        kept.append((name, sorted(ks)))
    return kept, skipped, shared

def zeek():
    root = os.path.join(OUT, "zeek"); shutil.rmtree(root, ignore_errors=True); os.makedirs(root)
    files = tree(ZK, ZK_C, "testing/btest")
    scripts = {}
    for p in files:
        rel = p[len("testing/btest/"):]
        if rel.startswith(("Baseline/", "Traces/", "Files/", "scripts/")) and not rel.startswith("scripts/base") and not rel.startswith("scripts/policy"):
            if not rel.startswith("scripts/"):
                continue
        if "/" not in rel:
            continue
        base = rel.rsplit(".", 1)[0] if "." in posixpath.basename(rel) else rel
        scripts.setdefault(base.replace("/", "."), []).append(p)
    base_dirs = {}
    for p in files:
        m = re.fullmatch(r"testing/btest/Baseline/([^/]+)/(http|dns|ssl)\.log", p)
        if m:
            base_dirs.setdefault(m.group(1), []).append(m.group(2) + ".log")
    kept, skipped = [], []
    for name in sorted(base_dirs):
        logs = sorted(base_dirs[name])
        cand = scripts.get(name)
        part = None
        if not cand:
            m = re.fullmatch(r"(.*)-(\d+)", name)
            if m and scripts.get(m.group(1)):
                cand, part = scripts[m.group(1)], int(m.group(2))
        if not cand or len(cand) != 1:
            skipped.append((name, logs, f"btest script not found: {cand}")); continue
        src = blob(ZK, files, cand[0]).decode(errors="replace")
        traces = [t for line in src.splitlines() if "@TEST-EXEC" in line
                  for t in re.findall(r"\$\{?TRACES\}?/([^\s;|)'\"]+)", line)]
        traces = [t.rstrip(";)'\"") for t in traces]
        traces = sorted(set(traces))
        if len(traces) != 1:
            skipped.append((name, logs, f"{len(traces)} traces: {traces}")); continue
        tp = "testing/btest/Traces/" + traces[0]
        data = blob(ZK, files, tp)
        if data is None or is_pointer(data):
            skipped.append((name, logs, f"trace {traces[0]} absent")); continue
        if tp.endswith(".gz"):
            data = gzip.decompress(data)
        d = os.path.join(root, name); os.makedirs(d)
        open(os.path.join(d, "input.pcap"), "wb").write(data)
        open(os.path.join(d, "test.zeek"), "w").write(src)
        for l in logs:
            open(os.path.join(d, l), "wb").write(blob(ZK, files, f"testing/btest/Baseline/{name}/{l}"))
        kept.append((name, logs, traces[0], part))
    return kept, skipped

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--suricata-verify", required=True)
    ap.add_argument("--zeek", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    OUT, SV, ZK = a.out, a.suricata_verify, a.zeek
    SHARED = set(os.listdir(os.path.join(a.shared, "data/pcaps/suricata-verify")))
    k, s, sh = suricata()
    print(f"suricata-verify: kept {len(k)}, skipped {len(s)}, shared (left out) {len(sh)}")
    for n, ks in k: print("  keep", n, ",".join(ks))
    for x in s: print("  SKIP", *x)
    for x in sh: print("  SHARED", x)
    k, s = zeek()
    print(f"zeek: kept {len(k)}, skipped {len(s)}")
    for x in k: print("  keep", *x)
    for x in s: print("  SKIP", *x)
