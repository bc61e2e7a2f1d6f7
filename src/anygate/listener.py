"""Closing a listening socket without dropping a connection.

Closing a listener resets every connection the kernel has completed but no process has accepted yet:
their clients saw the connection open, sent a request, and get a reset. And with several workers the
listener lives until the last process closes it, so the workers still accept (and serve) new
connections until each has noticed the signal. So a stop goes in three steps (on Linux):

1. ``refuse_new_connections``: a socket filter on the listener drops every incoming SYN, at once, for
   every process sharing it. No new connection completes; their clients retry the SYN and are refused
   once the listener is closed. Handshakes already answered still complete (their final ACK passes).
2. The servers go on accepting until the accept queue is empty (``queued_connections``) and the final
   ACKs of the handshakes answered just before the stop have had time to arrive; those connections
   were made before the stop and are served.
3. Then the listener is closed, and nothing is left in its queue.

Elsewhere step 1 and the queue check do nothing, and the listener is closed as before.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys
from collections.abc import Iterable

SO_ATTACH_FILTER = 26  # Linux, <asm-generic/socket.h>
# Classic BPF, run on each segment reaching the listener (offsets from the TCP header):
#   ldb [13]; and #0x12; jeq #0x02, drop, keep; drop: ret #0; keep: ret #-1
# Byte 13 holds the flags: a SYN without ACK (a new connection) is dropped, anything else passes.
DROP_NEW_SYN = ((0x30, 0, 0, 13), (0x54, 0, 0, 0x12), (0x15, 0, 1, 0x02), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF))
TCP_INFO_UNACKED = 24  # offset of tcpi_unacked: for a listener, the connections waiting to be accepted


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


def is_supported() -> bool:
    return sys.platform.startswith("linux")


def refuse_new_connections(listeners: Iterable[socket.socket | int]) -> bool:
    """Drop every new connection's SYN at ``listeners`` (sockets or file descriptors), for every process
    sharing them; connections already completed stay in the accept queue. False where unsupported."""
    if not is_supported():
        return False
    program = (SockFilter * len(DROP_NEW_SYN))(*(SockFilter(*op) for op in DROP_NEW_SYN))
    fprog = SockFprog(len(DROP_NEW_SYN), program)
    try:
        for listener in listeners:
            fd = listener if isinstance(listener, int) else listener.fileno()
            if fd >= 0:
                with socket.socket(fileno=os.dup(fd)) as same:  # the same socket, through a descriptor of our own
                    same.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError:  # refused here (a sandbox, say): the listener is then simply closed, as elsewhere
        return False
    return True


def queued_connections(listener: socket.socket | int) -> int:
    """How many completed connections wait in ``listener``'s accept queue (0 where unknown)."""
    if not is_supported():
        return 0
    fd = listener if isinstance(listener, int) else listener.fileno()
    if fd < 0:
        return 0
    try:
        with socket.socket(fileno=os.dup(fd)) as same:
            info = same.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0
    return int(struct.unpack_from("I", info, TCP_INFO_UNACKED)[0])
