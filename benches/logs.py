#!/usr/bin/env python3
"""Benchmarks of the logs half of trawl: file->null and file->stdout over a generated file
(default 1 GiB, loghub lines repeated), and `trawl tee` overhead on an app writing 100 MB.
Prints Markdown tables with a baseline measured in the same run and the ratio.

Usage: benches/logs.py [--size-mb 1024] [--tee-mb 100] [--trawl target/release/trawl]
"""
import argparse, glob, os, re, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "benches", "data")
LOGHUB = os.path.join(ROOT, "..", "shared", "data", "logs", "loghub")


def loghub_lines():
    paths = sorted(glob.glob(os.path.join(LOGHUB, "*", "*.log")))
    if not paths:
        paths = sorted(glob.glob("/work/shared/data/logs/loghub/*/*.log"))
    blob = b"".join(open(p, "rb").read() for p in paths)
    return blob if blob.endswith(b"\n") else blob + b"\n"


def make_input(size_mb):
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, f"loghub-{size_mb}m.log")
    want = size_mb << 20
    if os.path.exists(path) and os.path.getsize(path) >= want:
        return path
    blob = loghub_lines()
    with open(path + ".tmp", "wb") as f:
        written = 0
        while written < want:
            f.write(blob)
            written += len(blob)
    os.rename(path + ".tmp", path)
    return path


def count_lines(path):
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metric(port, name, kind):
    import urllib.request
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except Exception:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'component_kind="{kind}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def peak_rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_file(trawl, path, lines, output, workdir):
    port = free_port()
    data_dir = tempfile.mkdtemp(dir=workdir)
    cfg = os.path.join(workdir, f"file-{output}.yaml")
    out_type = '"null"' if output == "null" else "stdout"
    with open(cfg, "w") as f:
        f.write(f"data_dir: {data_dir}\nhttp: {{ address: 127.0.0.1:{port} }}\n"
                f"inputs:\n  f: {{ type: file, paths: [\"{path}\"] }}\n"
                f"outputs:\n  o: {{ type: {out_type} }}\n")
    start = time.monotonic()
    p = subprocess.Popen([trawl, "--log-level", "warn", "run", "-c", cfg], stdout=subprocess.DEVNULL)
    rss = 0
    try:
        while True:
            time.sleep(0.05)
            rss = max(rss, peak_rss_kb(p.pid))
            done = metric(port, "trawl_events_out_total", "output")
            if done is not None and done >= lines:
                break
            if p.poll() is not None:
                raise SystemExit(f"trawl exited early ({p.returncode})")
            if time.monotonic() - start > 600:
                raise SystemExit("timed out")
        elapsed = time.monotonic() - start
        rss = max(rss, peak_rss_kb(p.pid))
    finally:
        p.kill()
        p.wait()
    return elapsed, rss


def baseline_read(path):
    start = time.monotonic()
    subprocess.run(["wc", "-l", path], stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - start


def run_tee(trawl, mb, workdir):
    null_cfg = os.path.join(workdir, "tee-null.yaml")
    with open(null_cfg, "w") as f:
        f.write(f"data_dir: {workdir}/tee-data\nhttp: {{ enabled: false }}\noutputs:\n  o: {{ type: \"null\" }}\n")
    n = (mb << 20) // 100
    app = ["awk", f"BEGIN {{ for (i = 0; i < {n}; i++) printf \"%08d the app writes a line of about one hundred bytes as fast as it can go, padding...\\n\", i }}"]
    def timed(cmd):
        best = None
        for _ in range(3):
            start = time.monotonic()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            t = time.monotonic() - start
            best = t if best is None else min(best, t)
        return best
    bare = timed(app)
    teed = timed([trawl, "--log-level", "warn", "tee", "-c", null_cfg, "--"] + app)
    return bare, teed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--tee-mb", type=int, default=100)
    ap.add_argument("--trawl", default=os.path.join(ROOT, "target", "release", "trawl"))
    a = ap.parse_args()
    if not os.path.exists(a.trawl):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    path = make_input(a.size_mb)
    size = os.path.getsize(path)
    lines = count_lines(path)
    workdir = tempfile.mkdtemp(prefix="trawl-bench-logs-")
    try:
        base = baseline_read(path)
        rows = [("baseline: `wc -l`", base, 0)]
        for out in ("null", "stdout"):
            t, rss = run_file(a.trawl, path, lines, out, workdir)
            rows.append((f"file → {out}", t, rss))
        print(f"\n### file input: {size / 2**20:.0f} MiB, {lines:,} lines (loghub, repeated)\n")
        print("| case | seconds | lines/s | MB/s | peak RSS | time vs baseline |")
        print("|---|---|---|---|---|---|")
        for name, t, rss in rows:
            print(f"| {name} | {t:.2f} | {lines / t:,.0f} | {size / t / 1e6:,.0f} | {rss / 1024:.1f} MiB | {t / base:.1f}x |")
        bare, teed = run_tee(a.trawl, a.tee_mb, workdir)
        print(f"\n### trawl tee: an app writing {a.tee_mb} MB of lines as fast as it can (best of 3)\n")
        print("| case | seconds | MB/s | slowdown |")
        print("|---|---|---|---|")
        print(f"| baseline: app > /dev/null | {bare:.2f} | {a.tee_mb / bare:,.0f} | 1.00x |")
        print(f"| trawl tee -c (null output) -- app | {teed:.2f} | {a.tee_mb / teed:,.0f} | {teed / bare:.2f}x |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
