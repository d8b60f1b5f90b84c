#!/usr/bin/env python3
"""Idle footprint: trawl running a pipeline with nothing to ship (an empty file followed), for
file -> null, file -> regex -> null, file -> kafka (Apache Kafka on this machine) and
file -> elasticsearch (OpenSearch on this machine). Prints a Markdown table of VmRSS, its
anonymous and file-backed parts (/proc/PID/status) at 1 s, 5 s and 65 s after start, and the
CPU seconds (utime + stime) spent idle, for this trawl and, when TRAWL_BASE=/path/to/trawl is
set, a base binary run at the same time, with the ratio new / base. Goal: under 15 MB.

Usage: benches/idle.py   (TRAWL=path to skip the build; TRAWL_SYSTEMS_DIR as for the tests;
       SECONDS_IDLE=65 for the last sample)
"""
import os, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEMS = os.environ.get("TRAWL_SYSTEMS_DIR", "/var/cache/trawl-systems")
LAST = float(os.environ.get("SECONDS_IDLE", "65"))
SAMPLES = [1.0, 5.0, LAST]
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def status_kib(pid):
    """VmRSS, RssAnon and RssFile of a process, in KiB."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(rest.split()[0])
    return out


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICKS  # utime, stime (fields 14, 15)


def start_kafka(work):
    """Apache Kafka (scripts/systems/kafka-broker.sh): its process and bootstrap address."""
    port = free_port()
    kdir = os.path.join(work, "kafka")
    p = subprocess.Popen([os.path.join(ROOT, "scripts/systems/kafka-broker.sh"), kdir, str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if "Kafka Server started" in open(os.path.join(kdir, "server.log")).read():
                return p, f"127.0.0.1:{port}"
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f"Apache Kafka exited with {p.returncode}: see {kdir}/server.log")
        time.sleep(0.2)
    sys.exit("Apache Kafka did not start within 180 s")


def start_opensearch(work):
    """OpenSearch as the tests run it (scripts/systems/opensearch.sh installs it): its process
    and URL, once the cluster is yellow or green."""
    d = os.path.join(SYSTEMS, "opensearch")
    if not os.path.exists(os.path.join(d, "READY")):
        sys.exit(f"OpenSearch is not installed in {d}: run scripts/setup.sh")
    home = os.path.join(work, "opensearch")
    os.makedirs(home)
    java = os.path.join(os.environ["JAVA_HOME"], "bin/java") if "JAVA_HOME" in os.environ else "java"
    p = subprocess.Popen([java, "-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-Xss1m",
                          "-Dtrawl.opensearch.modules=false", f"-Djava.io.tmpdir={home}",
                          "-cp", f"{d}/lib/*:{d}/classes", "TrawlOpenSearchNode", home],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=open(os.path.join(home, "node.log"), "w"), text=True)
    for line in p.stdout:
        if line.startswith("trawl-opensearch http="):
            url = "http://" + line.strip().split("=", 1)[1]
            break
    else:
        sys.exit(f"OpenSearch exited: see {home}/node.log")
    import urllib.request
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(f"{url}/_cluster/health?wait_for_status=yellow&timeout=10s",
                                          timeout=15).read().decode()
            if '"status":"green"' in body or '"status":"yellow"' in body:
                return p, url
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("OpenSearch did not turn yellow within 180 s")


def main():
    trawl = os.environ.get("TRAWL")
    if not trawl:
        subprocess.run(["cargo", "build", "--profile", "dist", "-q", "--bin", "trawl"], cwd=ROOT, check=True)
        trawl = os.path.join(ROOT, "target/dist/trawl")
    binaries = [("trawl", trawl)]
    if os.environ.get("TRAWL_BASE"):
        binaries.append(("base", os.environ["TRAWL_BASE"]))
    work = tempfile.mkdtemp(prefix="trawl-bench-idle-")
    servers = []
    try:
        kafka, brokers = start_kafka(work)
        servers.append(kafka)
        opensearch, es_url = start_opensearch(work)
        servers.append(opensearch)
        empty = os.path.join(work, "app.log")
        open(empty, "w").close()
        cases = [
            ("file -> null", "outputs:\n  out: { type: \"null\" }\n"),
            ("file -> regex -> null",
             "processors:\n  - { type: regex, field: message, patterns: ['^(?<client>\\S+) (?<rest>.*)$'] }\n"
             "outputs:\n  out: { type: \"null\" }\n"),
            ("file -> kafka", f"outputs:\n  out: {{ type: kafka, brokers: [\"{brokers}\"], topic: idle }}\n"),
            ("file -> elasticsearch (OpenSearch)",
             f"outputs:\n  out: {{ type: elasticsearch, hosts: [\"{es_url}\"], index: idle }}\n"),
        ]
        runs = []
        for label, binary in binaries:
            for i, (case, outputs) in enumerate(cases):
                cfg = os.path.join(work, f"{label}-{i}.yaml")
                with open(cfg, "w") as f:
                    f.write(f"data_dir: {work}/data-{label}-{i}\nhttp: {{ enabled: false }}\n"
                            f"inputs:\n  app: {{ type: file, paths: [\"{empty}\"] }}\n{outputs}")
                p = subprocess.Popen([binary, "run", "-c", cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(cfg + ".log", "w"))
                runs.append((label, case, p, {}))
        started = time.monotonic()
        for at in SAMPLES:
            time.sleep(max(0.0, started + at - time.monotonic()))
            for label, case, p, seen in runs:
                if p.poll() is None:
                    seen[at] = status_kib(p.pid)
                    seen["cpu"] = cpu_seconds(p.pid)
        for _, _, p, _ in runs:
            p.terminate()
            p.wait(timeout=60)
    finally:
        for s in servers:
            if s.stdin:
                s.stdin.close()
            s.terminate()
            s.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nIdle RSS in MiB (anonymous + file-backed) at {', '.join(f'{s:g} s' for s in SAMPLES)} after start; "
          f"CPU seconds over the {LAST:g} s; {os.cpu_count()} CPUs shared with Kafka and OpenSearch\n")
    head = "| case | binary | " + " | ".join(f"RSS at {s:g} s" for s in SAMPLES) + " | anon / file at last | CPU s |"
    if len(binaries) > 1:
        head += " last RSS vs base |"
    print(head)
    print("|---|---|" + "---:|" * (len(SAMPLES) + 2) + ("---:|" if len(binaries) > 1 else ""))
    base = {case: seen for label, case, _, seen in runs if label == "base"}
    mib = lambda kib: f"{kib / 1024:.1f}"
    for label, case, _, seen in runs:
        if LAST not in seen:
            print(f"| {case} | {label} | exited early: see its log |")
            continue
        row = f"| {case} | {label} | " + " | ".join(mib(seen[s]["VmRSS"]) if s in seen else "-" for s in SAMPLES)
        last = seen[LAST]
        row += f" | {mib(last['RssAnon'])} / {mib(last['RssFile'])} | {seen['cpu']:.2f} |"
        if len(binaries) > 1:
            b = base.get(case, {}).get(LAST)
            row += f" {last['VmRSS'] / b['VmRSS']:.2f}x |" if b else " - |"
        print(row)


if __name__ == "__main__":
    main()
