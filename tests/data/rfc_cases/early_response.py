# early final response while the request body is still being uploaded (RFC 9110 15.5 / 9112 9.3: server may answer before reading the body)
import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcpgen import *
R=lambda s: s.replace(b'\n', b'\r\n')
convs=[]
# A: Content-Length body 30000; server answers 201 after 10000 bytes; client finishes body, then sends a second request
c=Conv(cport=47001); c.handshake(); convs.append(c)
c.send(True, R(b'POST /upload HTTP/1.1\nHost: a\nContent-Length: 30000\n\n')); c.send(True, b'A'*10000)
c.send(False, R(b'HTTP/1.1 201 Created\nContent-Length: 2\n\nok'))
c.send(True, b'B'*20000)
c.send(True, R(b'GET /next HTTP/1.1\nHost: a\n\n')); c.send(False, R(b'HTTP/1.1 200 OK\nContent-Length: 1\n\nn')); c.close()
# B: chunked body 3 chunks of 5000; response after first chunk
c=Conv(cport=47002, t0=1700000001.0); c.handshake(); convs.append(c)
c.send(True, R(b'POST /chunked HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n\n')); c.send(True, b'1388\r\n'+b'C'*5000+b'\r\n')
c.send(False, R(b'HTTP/1.1 201 Created\nContent-Length: 2\n\nok'))
c.send(True, b'1388\r\n'+b'D'*5000+b'\r\n1388\r\n'+b'E'*5000+b'\r\n0\r\n\r\n')
c.send(True, R(b'GET /next2 HTTP/1.1\nHost: a\n\n')); c.send(False, R(b'HTTP/1.1 200 OK\nContent-Length: 1\n\nn')); c.close()
merge('early_response.pcap', convs)
