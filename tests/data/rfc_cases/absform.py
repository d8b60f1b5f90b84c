# absolute-form request-target: RFC 9112 3.2.2 says Host must be ignored in favour of the target's authority
import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcpgen import *
c=Conv(cport=41009); c.handshake()
c.send(True, b'GET http://Other.Example:8081/abs?q=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n')
c.send(False, b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'); c.close(); c.save('absform.pcap')
# variant: HTTP/1.0 proxy request without Host
c=Conv(cport=41010, t0=1700000001.0); c.handshake()
c.send(True, b'GET http://proxied.example:8080/p HTTP/1.0\r\n\r\n')
c.send(False, b'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'); c.close(); c.save('absform_nohost.pcap')
