# Response whose Transfer-Encoding does not end in chunked: RFC 9112 6.3 rule 4 -> body is read until the server closes
import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcpgen import *
R=lambda s: s.replace(b'\n', b'\r\n'); convs=[]
c=Conv(cport=40201); c.handshake(); convs.append(c)
c.send(True, R(b'GET /tenf HTTP/1.1\nHost: a\n\n'))
c.send(False, R(b'HTTP/1.1 200 OK\nTransfer-Encoding: chunked, gzip\n\n5\nhello\n0\n\n')+b'EXTRA'); c.close()
c=Conv(cport=40202, t0=1700000001.0); c.handshake(); convs.append(c)
c.send(True, R(b'GET /gzonly HTTP/1.1\nHost: a\n\n'))
c.send(False, R(b'HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n\n')+b'Z'*30); c.close()
merge('te_not_final.pcap', convs)
