# HTTP/1.1 request with Upgrade: h2c answered by HTTP/2 SETTINGS+WINDOW_UPDATE+GOAWAY(last_stream=0, PROTOCOL_ERROR) and close
# (what nginx 'listen ... http2' does; live capture in nginx_h2c_goaway.pcap)
import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tcpgen import *
c=Conv(cport=43006, sport=8080); c.handshake()
c.send(True, b'GET /redir HTTP/1.1\r\nHost: 10.77.0.2:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n')
c.send(False, bytes.fromhex('000012040000000000000300000080000400010000000500ffffff0000040800000000007fff00000000080700000000000000000000000001'))
c.close(); c.save('h2c_goaway.pcap')
