# Helper for crafting TCP conversations with scapy
from scapy.all import Ether, IP, IPv6, TCP, UDP, Raw, wrpcap, Dot1Q
import itertools

class Conv:
    def __init__(self, cip='10.0.0.1', sip='10.0.0.2', cport=40000, sport=80, v6=False, t0=1700000000.0, vlan=None):
        self.cip, self.sip, self.cport, self.sport, self.v6 = cip, sip, cport, sport, v6
        self.cseq = 1000; self.sseq = 5000
        self.t = t0; self.pkts = []; self.vlan = vlan
    def _ip(self, src, dst):
        if self.v6: return IPv6(src=src, dst=dst)
        return IP(src=src, dst=dst)
    def _eth(self, c2s):
        e = Ether(src='02:00:00:00:00:01' if c2s else '02:00:00:00:00:02', dst='02:00:00:00:00:02' if c2s else '02:00:00:00:00:01')
        if self.vlan is not None: e = e / Dot1Q(vlan=self.vlan)
        return e
    def pkt(self, c2s, flags, payload=b'', seq=None, ack=None, dt=0.001, emit=True):
        self.t += dt
        if c2s:
            p = self._eth(True)/self._ip(self.cip, self.sip)/TCP(sport=self.cport, dport=self.sport, flags=flags,
                seq=(self.cseq if seq is None else seq)&0xffffffff, ack=(self.sseq if ack is None else ack)&0xffffffff, window=65535)
        else:
            p = self._eth(False)/self._ip(self.sip, self.cip)/TCP(sport=self.sport, dport=self.cport, flags=flags,
                seq=(self.sseq if seq is None else seq)&0xffffffff, ack=(self.cseq if ack is None else ack)&0xffffffff, window=65535)
        if payload: p = p/Raw(payload)
        p.time = self.t
        if emit: self.pkts.append(p)
        return p
    def handshake(self):
        self.pkt(True, 'S', ack=0); self.cseq += 1
        self.pkt(False, 'SA'); self.sseq += 1
        self.pkt(True, 'A')
    def send(self, c2s, data, seg=None, emit=True):
        """send data, optionally split into segments of size seg; returns list of pkts"""
        out = []
        seg = seg or 1400
        for i in range(0, len(data), seg):
            chunk = data[i:i+seg]
            p = self.pkt(c2s, 'PA', chunk, emit=emit)
            out.append(p)
            if c2s: self.cseq += len(chunk)
            else: self.sseq += len(chunk)
        return out
    def ack(self, c2s): self.pkt(c2s, 'A')
    def close(self):
        self.pkt(True, 'FA'); self.cseq += 1
        self.pkt(False, 'FA'); self.sseq += 1
        self.pkt(True, 'A')
    def save(self, fn, extra=None):
        wrpcap(fn, self.pkts + (extra or []))

def merge(fn, convs):
    allp = []
    for c in convs: allp += c.pkts
    allp.sort(key=lambda p: p.time)
    wrpcap(fn, allp)
