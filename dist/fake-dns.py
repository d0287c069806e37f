#!/usr/bin/env python3
"""A DNS server for dist/test-old-glibc: every A query is answered with 127.0.0.1, any
other with no records. It lets the release binary resolve WeChat's host name through the
old system's own resolver (nsswitch.conf, resolv.conf) and still reach only loopback.

Usage: fake-dns.py ADDRESS PORT. Prints one line per query: `query NAME TYPE`.
"""

import socket
import struct
import sys


def answer(query: bytes) -> tuple[bytes, str, int]:
    (tid,) = struct.unpack(">H", query[:2])
    labels, i = [], 12
    while query[i]:
        labels.append(query[i + 1 : i + 1 + query[i]].decode("ascii", "replace"))
        i += query[i] + 1
    end = i + 5  # the root label, then QTYPE and QCLASS
    (qtype,) = struct.unpack(">H", query[i + 1 : i + 3])
    records = b""
    if qtype == 1:
        # A pointer to the question's name, type A, class IN, TTL 60, 4 bytes.
        records = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    # A response, recursion desired and available, no error; one question.
    header = struct.pack(">HHHHHH", tid, 0x8180, 1, 1 if records else 0, 0, 0)
    return header + query[12:end] + records, ".".join(labels), qtype


def main() -> None:
    address, port = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    print(f"fake DNS on {address}:{port}", flush=True)
    while True:
        query, peer = sock.recvfrom(512)
        try:
            reply, name, qtype = answer(query)
        except (IndexError, struct.error):
            continue
        print(f"query {name} {qtype}", flush=True)
        sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
