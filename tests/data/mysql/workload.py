"""The known workload of tests/wire/mysql_real_server.rs against a throwaway MariaDB.

Usage: workload.py HOST PORT PASSWORD CSV
- the `mariadb` CLI (text protocol): DDL, DML, errors, a multi-statement query;
- PyMySQL (text protocol): literals sent inline, a multi-statement query with an error in
  the middle, COM_PING, COM_INIT_DB, LOAD DATA LOCAL INFILE, a refused login;
- mysql-connector-python with cursor(prepared=True) (pure Python): server-side prepared
  statements, COM_STMT_PREPARE / EXECUTE / CLOSE, an execute that fails and a prepare that
  fails.
Every statement runs on its own connection step by step, so the server's general log and the
capture see the same commands in the same order per connection.
"""
import subprocess
import sys

import mysql.connector
import pymysql
from pymysql.constants import CLIENT

host, port, password, csv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

# The CLI sends each statement as one COM_QUERY; with DELIMITER the two SELECTs go together
# as one multi-statement query. --force goes on after the two errors.
cli = """
CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), price DECIMAL(10,2));
INSERT INTO items (name, price) VALUES ('apple', 1.50), ('pear', 2.25), ('plum', 0.99);
SELECT * FROM items WHERE price > 1.00;
SELECT nosuchcol FROM items;
INSERT INTO items (id, name) VALUES (1, 'dup');
UPDATE items SET price = price + 1 WHERE name = 'pear';
DELIMITER //
SELECT COUNT(*) FROM items; SELECT name FROM items WHERE id = 2 //
DELIMITER ;
DELETE FROM items WHERE name = 'plum';
"""
subprocess.run(
    ["mariadb", "--no-defaults", "--skip-ssl", "--force", "-h", host, "-P", str(port),
     "-u", "shop", f"-p{password}", "shop"],
    input=cli.encode(), check=True, stdout=subprocess.DEVNULL,
)

c = pymysql.connect(host=host, port=port, user="shop", password=password, database="shop",
                    client_flag=CLIENT.MULTI_STATEMENTS, local_infile=True, ssl_disabled=True)
cur = c.cursor()
cur.execute("SELECT name, price FROM items WHERE id = %s", (1,))
cur.fetchall()
cur.execute("INSERT INTO items (name, price) VALUES (%s, %s)", ("secret-fig", 9.75))
c.commit()
cur.execute("SELECT COUNT(*) FROM items; UPDATE items SET price = 3.5 WHERE id = 2; SELECT 'done'")
while cur.nextset():
    pass
try:
    cur.execute("SELECT 1; SELECT * FROM nosuch; SELECT 2")
    while cur.nextset():
        pass
except pymysql.err.ProgrammingError:
    pass
c.ping(reconnect=False)
c.select_db("shop")
cur.execute(f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE items FIELDS TERMINATED BY ',' (name, price)")
c.commit()
c.close()

try:
    pymysql.connect(host=host, port=port, user="shop", password="wrong-password",
                    database="shop", ssl_disabled=True)
    sys.exit("the wrong password was accepted")
except pymysql.err.OperationalError:
    pass

m = mysql.connector.connect(host=host, port=port, user="shop", password=password,
                            database="shop", use_pure=True, ssl_disabled=True)
pc = m.cursor(prepared=True)
pc.execute("SELECT name, price FROM items WHERE id = ?", (2,))
pc.fetchall()
pc.execute("SELECT name, price FROM items WHERE id = ?", (3,))
pc.fetchall()
pc.execute("INSERT INTO items (name, price) VALUES (?, ?)", ("secret-kiwi", 4.5))
try:
    pc.execute("INSERT INTO items (id, name) VALUES (?, ?)", (1, "secret-dup"))
except mysql.connector.Error:
    pass
try:
    pc.execute("SELECT nosuchcol FROM items WHERE id = ?", (1,))
except mysql.connector.Error:
    pass
pc.close()
m.commit()
m.close()
