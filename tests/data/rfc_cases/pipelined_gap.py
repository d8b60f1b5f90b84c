import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcpgen import *
convs=[]; port=[48000]
def C(**kw):
    port[0]+=1; c=Conv(cport=port[0], t0=1700000000.0+port[0]-48000, **kw); c.handshake(); convs.append(c); return c
R=lambda s: s.replace(b'\n', b'\r\n')
# 1 lost segment inside CL body (acked) then next request
c=C(); c.send(True, R(b'GET /gap HTTP/1.1\nHost: a\n\n'))
ps=c.send(False, R(b'HTTP/1.1 200 OK\nContent-Length: 3000\n\n')+b'G'*3000, seg=1000, emit=False)
for i,p in enumerate(ps):
    if i!=1: c.pkts.append(p)
c.ack(True)
c.send(True, R(b'GET /after HTTP/1.1\nHost: a\n\n')); c.send(False, R(b'HTTP/1.1 200 OK\nContent-Length: 2\n\nok')); c.close()
# 2 lost segment inside chunked body
c=C(); c.send(True, R(b'GET /cgap HTTP/1.1\nHost: a\n\n'))
body=R(b'HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n')+b''.join(b'%x\r\n'%500+b'c'*500+b'\r\n' for _ in range(6))+b'0\r\n\r\n'
ps=c.send(False, body, seg=1000, emit=False)
for i,p in enumerate(ps):
    if i!=1: c.pkts.append(p)
c.ack(True); c.send(True, R(b'GET /after2 HTTP/1.1\nHost: a\n\n')); c.send(False, R(b'HTTP/1.1 200 OK\nContent-Length: 2\n\nok')); c.close()
# 3 lost request segment (whole 2nd pipelined request), responses arrive
c=C(); a=c.send(True, R(b'GET /r1 HTTP/1.1\nHost: a\n\n')); b=c.send(True, R(b'GET /r2 HTTP/1.1\nHost: a\n\n'), emit=False); c.send(True, R(b'GET /r3 HTTP/1.1\nHost: a\n\n'))
c.send(False, R(b'HTTP/1.1 200 OK\nContent-Length: 1\n\n1HTTP/1.1 201 OK\nContent-Length: 1\n\n2HTTP/1.1 202 OK\nContent-Length: 1\n\n3')); c.close()
merge('pipelined_gap.pcap', convs)
