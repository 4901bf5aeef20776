"""A tiny cluster DNS: answers A queries for Service names with their ready pods' IPs.

Names: `<svc>.<ns>.svc.cluster.local` (and shorter forms through the pods' search path). Like a
headless Service: there is no kube-proxy, so the answer is the endpoint pods themselves.
Anything else gets NXDOMAIN (this machine has no outside DNS to forward to). Limits: A records
only, UDP only, TTL 1 s.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

SUFFIX = ".svc.cluster.local"
Lookup = Callable[[str, str], list[str]]  # (namespace, service) -> IPs


def _parse_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        length = packet[offset]
        offset += 1
        if length == 0:
            break
        labels.append(packet[offset : offset + length].decode(errors="replace"))
        offset += length
    return ".".join(labels).lower(), offset


def answer(query: bytes, lookup: Lookup) -> bytes:
    """The response to one DNS query packet."""
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount < 1:
        return struct.pack("!HHHHHH", ident, 0x8181, 0, 0, 0, 0)
    name, end = _parse_name(query, 12)
    qtype, _qclass = struct.unpack("!HH", query[end : end + 4])
    question = query[12 : end + 4]
    ips: list[str] = []
    found = False
    if name.endswith(SUFFIX):
        parts = name[: -len(SUFFIX)].split(".")
        if len(parts) == 2:
            ips = lookup(parts[1], parts[0])
            found = True
    if not found:  # NXDOMAIN
        return struct.pack("!HHHHHH", ident, 0x8183, 1, 0, 0, 0) + question
    records = b""
    if qtype == 1:
        for ip in ips:
            records += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 1, 4) + socket.inet_aton(ip)
    count = len(ips) if qtype == 1 else 0
    return struct.pack("!HHHHHH", ident, 0x8580, 1, count, 0, 0) + question + records


class DnsServer:
    def __init__(self, address: str, lookup: Lookup, port: int = 53) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.lookup = lookup
        self.thread = threading.Thread(target=self._serve, daemon=True, name="dns")

    def start(self) -> None:
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            try:
                self.sock.sendto(answer(data, self.lookup), peer)
            except (OSError, IndexError, struct.error):
                continue

    def close(self) -> None:
        self.sock.close()
