#!/usr/bin/env python3
"""The known workload the pgsql fixtures and the end-to-end test run against a real server:
psql for the simple protocol (several statements in one Query, COPY, notices, errors) and
psycopg 3 for the extended protocol (prepared statements, a pipeline, an error).
Usage: workload.py HOST PORT PASSWORD"""
import os
import subprocess
import sys

import psycopg

host, port, password = sys.argv[1], sys.argv[2], sys.argv[3]
env = dict(os.environ, PGPASSWORD=password)


def psql(sql, sslmode="disable", stdin=None):
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=0",
         f"host={host} port={port} user=postgres dbname=shop sslmode={sslmode} application_name=wl-psql",
         "-c", sql],
        env=env, input=stdin, text=True, check=False, capture_output=True)


# Simple protocol, one connection per psql -c (startup, SCRAM, query, terminate).
psql("DROP TABLE IF EXISTS never_there")  # a NOTICE, not an error
psql("DROP TABLE IF EXISTS items")
psql("CREATE TABLE items (id int primary key, name text, price numeric)")
psql("INSERT INTO items VALUES (1, 'apple', 1.5), (2, 'pear', 2.25), (3, 'it''s', 3)")
psql("SELECT id, name FROM items WHERE price > 1.0 ORDER BY id")
psql("SELECT 1; UPDATE items SET price = price * 2 WHERE id < 3; SELECT name FROM items WHERE id = 42")
psql("SELECT * FROM no_such_table")  # 42P01
psql("INSERT INTO items VALUES (1, 'dup', 0)")  # 23505
psql("COPY items (id, name, price) FROM STDIN", stdin="10\tfig\t4\n11\tkiwi\t5\n\\.\n")
psql("COPY items TO STDOUT")
psql("SELECT count(*) FROM items", sslmode="require")  # SSLRequest answered 'S': TLS after

# Extended protocol: psycopg sends Parse/Bind/Describe/Execute/Sync.
with psycopg.connect(host=host, port=port, user="postgres", password=password,
                     dbname="shop", sslmode="disable", application_name="wl-psycopg") as conn:
    cur = conn.cursor()
    for i in range(3):
        cur.execute("SELECT name, price FROM items WHERE id = %s", (i + 1,), prepare=True)
        cur.fetchall()
    cur.execute("UPDATE items SET name = %s WHERE id = %s", ("plum", 2))
    conn.commit()
    try:
        cur.execute("SELECT 1 / %s", (0,))  # 22012
    except psycopg.errors.DivisionByZero:
        conn.rollback()
    with conn.pipeline():
        cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (20, "lime", 1))
        cur.execute("INSERT INTO items VALUES (%s, %s, %s)", (21, "date", 2))
        cur.execute("DELETE FROM items WHERE id >= %s", (20,))
    conn.commit()
