#!/usr/bin/env python3
"""Makes tests/data/db_slow.pcap: slow database queries, captured with dumpcap on the loopback of
a network namespace of its own (`db-slow`). What an SRE wants to see from the wire: a PostgreSQL
report query that runs 40 s (`pg_sleep`), then a quick one on the same connection; and the same
on MariaDB (`SLEEP(40)`, MySQL protocol), at the same time; 35 s in, another
query on each server on a connection of its own. Real servers (Debian's `postgresql` and
`mariadb-server`, as scripts/setup.sh installs them) in throwaway data directories.
tests/wire/slow_queries.rs holds the transactions expected. Run as root: `python3 tests/data/db_slow.py`."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from http_edge_cases import capture_in_netns

NS = "db-slow"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "db_slow.pcap")
SLOW = 40  # seconds each slow query runs


def pg_bin(name):
    for v in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
        p = os.path.join("/usr/lib/postgresql", v, "bin", name)
        if os.path.exists(p):
            return p
    raise SystemExit("no PostgreSQL under /usr/lib/postgresql")


def as_postgres(*args):
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, stdout=subprocess.DEVNULL)


def start_postgres(tmp):
    data = os.path.join(tmp, "pg")
    as_postgres(pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=trust")
    opts = f"-p 5432 -k {tmp} -c listen_addresses=127.0.0.1 -c ssl=off"
    as_postgres(pg_bin("pg_ctl"), "-D", data, "-l", os.path.join(tmp, "pg.log"), "-o", opts, "-w", "start")
    return data


def start_mariadb(tmp):
    data = os.path.join(tmp, "my")
    os.makedirs(data)
    shutil.chown(tmp, "mysql")
    shutil.chown(data, "mysql")
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=mysql",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen(["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}", "--user=mysql",
                               "--bind-address=127.0.0.1", "--port=3306", f"--socket={tmp}/my.sock",
                               f"--pid-file={tmp}/my.pid", "--skip-ssl", "--skip-name-resolve",
                               "--innodb-buffer-pool-size=16M", f"--log-error={tmp}/my.err"])
    for _ in range(150):
        if subprocess.run(["mariadb", "--no-defaults", f"--socket={tmp}/my.sock", "-u", "root", "-e",
                           "CREATE USER 'shop'@'127.0.0.1'; GRANT ALL ON *.* TO 'shop'@'127.0.0.1'"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return server
        time.sleep(0.2)
    raise SystemExit("mariadbd did not start: " + open(f"{tmp}/my.err").read())


def inside():
    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o777)
    pg = start_postgres(tmp)
    my = start_mariadb(tmp)
    try:
        time.sleep(0.5)
        # Each client runs its two statements on one connection, the slow one first.
        psql = threading.Thread(target=lambda: subprocess.run(
            ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres",
             "-c", f"SELECT pg_sleep({SLOW}) AS monthly_report", "-c", "SELECT 1 AS after_report"],
            check=True, stdout=subprocess.DEVNULL))
        mysql = threading.Thread(target=lambda: subprocess.run(
            ["mariadb", "--no-defaults", "--skip-ssl", "-h", "127.0.0.1", "-P", "3306", "-u", "shop",
             "-e", f"SELECT SLEEP({SLOW}) AS monthly_report; SELECT 1 AS after_report"],
            check=True, stdout=subprocess.DEVNULL))
        psql.start()
        mysql.start()
        # Other clients meanwhile, 35 s in, on connections of their own: the packets a node sees
        # all along, during which the slow queries are still running.
        time.sleep(35)
        subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres",
                        "-c", "SELECT 2 AS meanwhile"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["mariadb", "--no-defaults", "--skip-ssl", "-h", "127.0.0.1", "-P", "3306", "-u", "shop",
                        "-e", "SELECT 2 AS meanwhile"], check=True, stdout=subprocess.DEVNULL)
        psql.join()
        mysql.join()
        time.sleep(0.5)
    finally:
        as_postgres(pg_bin("pg_ctl"), "-D", pg, "-m", "fast", "stop")
        my.terminate()
        my.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    capture_in_netns(NS, OUT, __file__, inside)
