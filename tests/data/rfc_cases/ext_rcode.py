# EDNS extended RCODE (RFC 6891 6.1.3) ignored: BADVERS(16) -> NOERROR, BADCOOKIE(23) -> YXRRSET
from scapy.all import *
pk=[]; T=[1700000000.0]
def udp(c2s, payload, sport):
    T[0]+=0.01
    p=Ether()/(IP(src='10.0.0.1',dst='10.0.0.53')/UDP(sport=sport,dport=53) if c2s else IP(src='10.0.0.53',dst='10.0.0.1')/UDP(sport=53,dport=sport))/payload
    p.time=T[0]; pk.append(p)
q=DNS(id=8,qd=DNSQR(qname='ev.example.com'),ar=DNSRROPT(rclass=4096,version=1)); udp(True,q,50008)
udp(False,DNS(id=8,qr=1,rcode=0,qd=q.qd,ar=DNSRROPT(rclass=4096,extrcode=1)),50008)   # BADVERS = 16
q=DNS(id=12,qd=DNSQR(qname='ck.example.com'),ar=DNSRROPT(rclass=4096)); udp(True,q,50013)
udp(False,DNS(id=12,qr=1,rcode=7,qd=q.qd,ar=DNSRROPT(rclass=4096,extrcode=1)),50013)  # BADCOOKIE = 23
wrpcap('ext_rcode.pcap',pk)
