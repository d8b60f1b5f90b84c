#!/usr/bin/env python3
"""Runs one command and prints `seconds peak_rss_kb` (wall time from perf_counter, peak RSS of
the process from wait4), with optional stdin/stdout files so that no shell sits in between.
`--cpu` first prints `seconds cpu_seconds peak_rss_kb`: user+sys from wait4 to the microsecond
(GNU time's %U and %S have two decimals: 3% of a 0.3 s run).
Peak RSS comes from GNU time: Linux folds the pre-exec address space into a child's maxrss,
so a child spawned by Python itself would report Python's own pages."""
import os, shutil, sys, tempfile, time

args = sys.argv[1:]
cpu = bool(args) and args[0] == "--cpu"
if cpu:
    args = args[1:]
actions = []
while args and args[0] in ("--stdin", "--stdout"):
    flag, path, args = args[0], args[1], args[2:]
    if flag == "--stdin":
        actions.append((os.POSIX_SPAWN_OPEN, 0, path, os.O_RDONLY, 0))
    else:
        actions.append((os.POSIX_SPAWN_OPEN, 1, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
if args and args[0] == "--":
    args = args[1:]
if not any(a[1] == 0 for a in actions):
    actions.append((os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0))
if not any(a[1] == 1 for a in actions):
    actions.append((os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0))
actions.append((os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0))
exe = shutil.which(args[0]) or args[0]
rss_file = tempfile.NamedTemporaryFile(prefix="trawl-rss-", delete=False).name
argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file, exe] + args[1:]
start = time.perf_counter()
pid = os.posix_spawn("/usr/bin/time", argv, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - start
with open(rss_file) as f:
    rss_kb = int(f.read().split()[-1])
os.unlink(rss_file)
if cpu:
    # GNU time's usage includes the command it waited for (and its own, a millisecond).
    print(f"{elapsed:.4f} {usage.ru_utime + usage.ru_stime:.4f} {rss_kb}")
else:
    print(f"{elapsed:.4f} {rss_kb}")
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
