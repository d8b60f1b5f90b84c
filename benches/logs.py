#!/usr/bin/env python3
"""Benchmarks of the logs half of trawl: file->null and file->stdout over a generated file
(default 1 GiB, loghub lines repeated), and `trawl tee` overhead on an app writing 100 MB
into a pipe (vs the same app writing into the same kind of pipe bare). Prints Markdown tables
with a baseline measured in the same run and the ratio.

Usage: benches/logs.py [--size-mb 1024] [--tee-mb 100] [--tee-rounds 5] [--only file|tee]
                       [--trawl target/dist/trawl]
"""
import argparse, glob, os, re, shlex, shutil, socket, statistics, subprocess, sys, tempfile, time

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


def run_tee(trawl, mb, workdir, rounds):
    """The app times itself (start to exit), so trawl's flush after the app exited is not
    counted: the question is whether the app is slowed, not how long shipping takes. Every case
    writes into the same kind of destination: a pipe drained by `cat > /dev/null`, as a
    container's stdout is a pipe read by the runtime (the bare app into /dev/null is shown too,
    as the floor). Cases run interleaved, round after round, so that load from elsewhere on the
    machine falls on all of them alike; the best and the median round are shown."""
    null_cfg = os.path.join(workdir, "tee-null.yaml")
    with open(null_cfg, "w") as f:
        f.write(f"data_dir: {workdir}/tee-data\nhttp: {{ enabled: false }}\noutputs:\n  o: {{ type: \"null\" }}\n")
    n = (mb << 20) // 100
    timing = os.path.join(workdir, "app-ns")
    tee_file = os.path.join(workdir, "tee.log")
    awk = f"awk 'BEGIN {{ for (i = 0; i < {n}; i++) printf \"%08d the app writes a line of about one hundred bytes as fast as it can go, padding...\\n\", i }}'"
    app = f"s=$(date +%s%N); {awk}; e=$(date +%s%N); echo $((e - s)) > {timing}"
    trawl_tee = f"{trawl} --log-level error tee -c {null_cfg} -- sh -c {shlex.quote(app)}"
    cases = [
        ("app > /dev/null (floor)", f"{{ {app}; }} > /dev/null"),
        ("baseline: app \\| cat > /dev/null", f"{{ {app}; }} | cat > /dev/null"),
        ("app \\| tee -a file \\| cat (what trawl tee replaces)",
         f"{{ {app}; }} | tee -a {tee_file} | cat > /dev/null; rm -f {tee_file}"),
        ("trawl tee -c (null output) -- app \\| cat", f"{trawl_tee} | cat > /dev/null"),
    ]
    times = {name: [] for name, _ in cases}
    for _ in range(rounds):
        for name, cmd in cases:
            subprocess.run(["sh", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            times[name].append(int(open(timing).read()) / 1e9)
    return [(name, min(t), statistics.median(t)) for name, t in times.items()]


def file_table(a, path, size, lines, workdir):
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--tee-mb", type=int, default=100)
    ap.add_argument("--tee-rounds", type=int, default=5)
    ap.add_argument("--only", choices=["file", "tee"], help="run one of the two parts")
    ap.add_argument("--trawl", default=os.path.join(ROOT, "target", "dist", "trawl"))
    a = ap.parse_args()
    if not os.path.exists(a.trawl):
        subprocess.run(["cargo", "build", "--profile", "dist"], cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="trawl-bench-logs-")
    try:
        if a.only != "tee":
            path = make_input(a.size_mb)
            file_table(a, path, os.path.getsize(path), count_lines(path), workdir)
        if a.only != "file":
            rows = run_tee(a.trawl, a.tee_mb, workdir, a.tee_rounds)
            base = rows[1][1]
            print(f"\n### trawl tee: an app writing {a.tee_mb} MB of lines as fast as it can "
                  f"(the app's own run time; best and median of {a.tee_rounds} interleaved rounds)\n")
            print("| case | best s | median s | MB/s (best) | slowdown (best) | slowdown (median) |")
            print("|---|---|---|---|---|---|")
            med_base = rows[1][2]
            for name, best, med in rows:
                print(f"| {name} | {best:.3f} | {med:.3f} | {a.tee_mb / best:,.0f} | {best / base:.2f}x | {med / med_base:.2f}x |")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
