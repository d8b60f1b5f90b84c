#!/usr/bin/env python3
"""Elasticsearch output under partial rejections: 100,000 events file -> elasticsearch (the test
stand-in, `examples/es_test_server.rs`, counting documents without keeping them) with 0% and
with 20% of items answered 429, as an overloaded cluster does. Prints a Markdown table: wall
seconds until every event is stored, CPU seconds of trawl, events/s, and the ratio to the 0% run.
Each case runs RUNS times (default 3); the median wall time's run is reported.

Usage: benches/es_rejections.py [LINES]   (default 100,000; TRAWL=path to use a built binary,
else `cargo build --release` first; PERCENTS="0 20" for other shares)
"""
import os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINES = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
RUNS = int(os.environ.get("RUNS", "3"))
PERCENTS = [int(p) for p in os.environ.get("PERCENTS", "0 20").split()]
TRAWL = os.environ.get("TRAWL") or os.path.join(ROOT, "target/release/trawl")
ES = os.path.join(ROOT, "target/release/examples/es_test_server")
SAMPLE = os.path.join(ROOT, "../shared/data/logs/loghub/Apache/Apache_2k.log")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def metric(addr, name, component):
    try:
        text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name) and f'component="{component}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def cpu_seconds(pid):
    # utime + stime, fields 14 and 15 of /proc/PID/stat (after the parenthesised name).
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run_case(work, percent, run, input_path):
    es = subprocess.Popen([ES, "--count-only", "--item-429-percent", str(percent)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = es.stdout.readline().strip()
        data = os.path.join(work, f"data-{percent}-{run}")
        addr = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(work, f"es-{percent}-{run}.yaml")
        with open(cfg, "w") as f:
            f.write(f"data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 30s\n"
                    f"inputs:\n  app: {{ type: file, paths: [\"{input_path}\"] }}\n"
                    f"outputs:\n  out: {{ type: elasticsearch, hosts: [\"{url}\"], index: bench }}\n")
        start = time.monotonic()
        p = subprocess.Popen([TRAWL, "run", "-c", cfg], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        done_at, cpu = None, None
        while time.monotonic() - start < 600:
            time.sleep(0.05)
            out = metric(addr, "trawl_events_out_total", "out")
            if out is not None and out >= LINES:
                done_at = time.monotonic()
                cpu = cpu_seconds(p.pid)
                break
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    finally:
        es.stdin.close()
        summary = es.stdout.read().strip()
        es.wait(timeout=30)
    stats = dict(kv.split("=", 1) for kv in summary.split() if "=" in kv)
    writes, requests = int(stats.get("writes", -1)), int(stats.get("requests", -1))
    if done_at is None:
        return None
    return (done_at - start, cpu, writes, requests)


def main():
    if not os.environ.get("TRAWL"):
        subprocess.run(["cargo", "build", "--release", "-q", "--bin", "trawl"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "es_test_server"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="trawl-bench-es-")
    try:
        sample = [l for l in open(SAMPLE, encoding="utf-8", errors="replace").read().splitlines() if l]
        input_path = os.path.join(work, "app.log")
        with open(input_path, "w") as f:
            for i in range(LINES):
                f.write(sample[i % len(sample)] + "\n")
        rows = []
        for percent in PERCENTS:
            runs = [run_case(work, percent, r, input_path) for r in range(RUNS)]
            done = sorted((r for r in runs if r is not None), key=lambda r: r[0])
            rows.append((percent, done[len(done) // 2] if len(done) == len(runs) else None))
        print(f"\n{LINES:,} events (loghub Apache sample), file -> elasticsearch stand-in, default output "
              f"settings; median of {RUNS} runs; {os.cpu_count()} CPUs shared with the stand-in\n")
        print("| items answered 429 | wall s | CPU s (trawl) | events/s | ratio to 0% | documents stored | bulk requests |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        base = None
        for percent, r in rows:
            if r is None:
                print(f"| {percent}% | did not finish | | | | | |")
                continue
            wall, cpu, writes, requests = r
            eps = LINES / wall
            if base is None:
                base = eps
            print(f"| {percent}% | {wall:.2f} | {cpu:.2f} | {eps:,.0f} | {eps / base:.2f} | {writes:,} | {requests:,} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
