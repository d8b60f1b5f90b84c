#!/usr/bin/env python3
"""Output benchmarks: file -> kafka (Apache Kafka on the same machine) and file -> elasticsearch (the
test stand-in), against file -> null measured in the same run as the baseline. Prints a Markdown
table: events/s, MB/s of input, peak RSS of trawl (VmHWM), and the ratio to the baseline.

Usage: benches/outputs.py [LINES]   (default 1,000,000; builds the binary as shipped, `--profile dist`, first)
Environment: TRAWL (a binary to measure instead of building one), MAX_IN_FLIGHT (the file input's
`max_in_flight`, e.g. 8MiB, to measure the peak RSS it buys; default: the input's own default).
"""
import os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
TRAWL = os.environ.get("TRAWL") or os.path.join(ROOT, "target/dist/trawl")
ES = os.path.join(ROOT, "target/release/examples/es_test_server")
MAX_IN_FLIGHT = os.environ.get("MAX_IN_FLIGHT")
SAMPLE = os.path.join(ROOT, "../shared/data/logs/loghub/Apache/Apache_2k.log")


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


def peak_rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid):
    """user + system CPU of the process so far, from /proc (utime and stime, fields 14 and 15)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def run_case(work, name, output_yaml, input_path, input_bytes):
    data = os.path.join(work, f"data-{name}")
    addr = f"127.0.0.1:{free_port()}"
    cfg = os.path.join(work, f"{name}.yaml")
    in_flight = f", max_in_flight: {MAX_IN_FLIGHT}" if MAX_IN_FLIGHT else ""
    with open(cfg, "w") as f:
        f.write(f"data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\nshutdown_timeout: 30s\n"
                f"inputs:\n  app: {{ type: file, paths: [\"{input_path}\"]{in_flight} }}\noutputs:\n{output_yaml}")
    start = time.monotonic()
    p = subprocess.Popen([TRAWL, "run", "-c", cfg], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    peak, done_at, cpu = 0, None, None
    while time.monotonic() - start < 300:
        time.sleep(0.05)
        peak = max(peak, peak_rss_kib(p.pid))
        out = metric(addr, "trawl_events_out_total", "out")
        if out is not None and out >= LINES:
            done_at = time.monotonic()
            cpu = cpu_seconds(p.pid)
            break
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    if done_at is None:
        return (name, None, None, None, peak, None)
    secs = done_at - start
    return (name, secs, LINES / secs, input_bytes / secs / 1e6, peak, cpu)


def main():
    if not os.environ.get("TRAWL"):
        subprocess.run(["cargo", "build", "--profile", "dist", "-q", "--bin", "trawl"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "es_test_server"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="trawl-bench-outputs-")
    try:
        sample = [l for l in open(SAMPLE, encoding="utf-8", errors="replace").read().splitlines() if l]
        input_path = os.path.join(work, "app.log")
        with open(input_path, "w") as f:
            for i in range(LINES):
                f.write(sample[i % len(sample)] + "\n")
        input_bytes = os.path.getsize(input_path)

        rows = [run_case(work, "file -> null (baseline)", "  out: { type: \"null\" }\n", input_path, input_bytes)]

        # Apache Kafka on the same machine (scripts/systems/kafka-broker.sh: one KRaft node,
        # topics created on first use with 2 partitions).
        kport = free_port()
        kdir = os.path.join(work, "kafka")
        broker = subprocess.Popen([os.path.join(ROOT, "scripts/systems/kafka-broker.sh"), kdir, str(kport)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            while time.monotonic() - started < 180:
                try:
                    if "Kafka Server started" in open(os.path.join(kdir, "server.log")).read():
                        break
                except OSError:
                    pass
                if broker.poll() is not None:
                    sys.exit(f"Apache Kafka exited with {broker.returncode}: see {kdir}/server.log")
                time.sleep(0.2)
            rows.append(run_case(work, "file -> kafka (Apache Kafka, lz4, acks=all)",
                                 f"  out: {{ type: kafka, brokers: [\"127.0.0.1:{kport}\"], topic: bench }}\n",
                                 input_path, input_bytes))
        finally:
            broker.terminate(); broker.wait(timeout=60)

        es = subprocess.Popen([ES, "--count-only"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            url = es.stdout.readline().strip()
            rows.append(run_case(work, "file -> elasticsearch (test server, gzip)",
                                 f"  out: {{ type: elasticsearch, hosts: [\"{url}\"], index: bench }}\n",
                                 input_path, input_bytes))
        finally:
            es.stdin.close(); es.wait(timeout=30)

        base = rows[0][2]
        print(f"\n{LINES:,} lines ({input_bytes / 1e6:.0f} MB, loghub Apache sample repeated); {os.cpu_count()} CPUs shared with the broker/server; "
              f"max_in_flight {MAX_IN_FLIGHT or 'default'}\n")
        print("| case | seconds | trawl CPU s (user+sys) | µs CPU/event | events/s | MB/s | peak RSS (MiB) | ratio vs baseline |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, secs, eps, mbs, peak, cpu in rows:
            if secs is None:
                print(f"| {name} | did not finish | | | | | {peak / 1024:.1f} | |")
            else:
                ratio = f"{eps / base:.2f}" if base else "n/a"
                cpu_s = f"{cpu:.2f}" if cpu is not None else "n/a"
                per = f"{cpu * 1e6 / LINES:.2f}" if cpu is not None else "n/a"
                print(f"| {name} | {secs:.2f} | {cpu_s} | {per} | {eps:,.0f} | {mbs:.1f} | {peak / 1024:.1f} | {ratio} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
