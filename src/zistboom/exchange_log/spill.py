"""Append-only local spill file: where records wait while the store is down or slow.

Frames are ``u32 length || u32 crc32(payload) || payload`` (little-endian); the payload is
``u32 record_len || i32 request_body_len || i32 response_body_len || record || bodies`` with -1
meaning "no body". Every :meth:`SpillFile.append` ends with ``fsync``, so a record in the spill
file survives a crash. A torn last frame (crash mid-write) fails its length or CRC check and is cut
off when the file is opened.

Draining reads frames from a read offset kept in ``<name>.offset``. The offset is only a hint:
after a crash between a store commit and the offset update the same records are read again, and
the writer drops them because the store already holds them (same request id and leaf hash).
When everything is drained the file is truncated to zero.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from zistboom.exchange_log.record import Encoded

_FRAME = struct.Struct("<II")
_HEAD = struct.Struct("<Iii")


class SpillFile:
    """One spill file at ``path`` holding at most ``max_bytes`` bytes."""

    def __init__(self, path: Path, max_bytes: int):
        self.path = Path(path)
        self.offset_path = self.path.with_name(self.path.name + ".offset")
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self.read_offset = self._load_offset()
        self.size, self.pending_records = self._scan()

    # -- open / recovery --------------------------------------------------------------------

    def _load_offset(self) -> int:
        try:
            raw = self.offset_path.read_bytes()
            return struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0
        except FileNotFoundError:
            return 0

    def _scan(self) -> tuple[int, int]:
        """Find the end of the last whole frame; cut off a torn tail. Returns (size, frames after
        the read offset)."""
        end = os.fstat(self._fd).st_size
        if self.read_offset > end:
            self.read_offset = 0
        pos, count = 0, 0
        with open(self.path, "rb") as f:
            while True:
                head = f.read(_FRAME.size)
                if len(head) < _FRAME.size:
                    break
                n, crc = _FRAME.unpack(head)
                payload = f.read(n)
                if len(payload) < n or zlib.crc32(payload) != crc:
                    break
                pos += _FRAME.size + n
                if pos > self.read_offset:
                    count += 1
        if pos < end:
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)
        if self.read_offset > pos:
            self.read_offset = pos
        return pos, count

    # -- writing ----------------------------------------------------------------------------

    def room_for(self, nbytes: int) -> bool:
        return self.size + nbytes <= self.max_bytes

    @staticmethod
    def frame(it: Encoded) -> bytes:
        rq, rs = it.request_body, it.response_body
        payload = _HEAD.pack(len(it.record), -1 if rq is None else len(rq), -1 if rs is None else len(rs)) \
            + it.record + (rq or b"") + (rs or b"")
        return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload

    def append(self, items: list[Encoded]) -> int:
        """Append ``items`` and fsync; returns how many were written. Items that would pass
        ``max_bytes`` are not written (the caller accounts them as dropped)."""
        frames = []
        total = 0
        for it in items:
            fr = self.frame(it)
            if self.size + total + len(fr) > self.max_bytes:
                break
            frames.append(fr)
            total += len(fr)
        if frames:
            os.write(self._fd, b"".join(frames))
            os.fsync(self._fd)
            self.size += total
            self.pending_records += len(frames)
        return len(frames)

    # -- draining ---------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self.read_offset < self.size

    def read(self, max_items: int) -> tuple[list[tuple[bytes, bytes | None, bytes | None]], int]:
        """Up to ``max_items`` frames from the read offset as ``(record, request_body,
        response_body)`` and the offset after them (pass it to :meth:`consume`)."""
        out = []
        pos = self.read_offset
        with open(self.path, "rb") as f:
            f.seek(pos)
            while len(out) < max_items and pos < self.size:
                n, crc = _FRAME.unpack(f.read(_FRAME.size))
                payload = f.read(n)
                if zlib.crc32(payload) != crc:
                    raise OSError(f"spill file {self.path} corrupt at offset {pos}")
                rl, ql, sl = _HEAD.unpack_from(payload)
                p = _HEAD.size
                rec = payload[p : p + rl]
                p += rl
                rq = None if ql < 0 else payload[p : p + ql]
                p += max(ql, 0)
                rs = None if sl < 0 else payload[p : p + sl]
                out.append((rec, rq, rs))
                pos += _FRAME.size + n
        return out, pos

    def consume(self, new_offset: int, count: int) -> None:
        """Mark frames up to ``new_offset`` as stored; truncate the file when all are."""
        self.read_offset = new_offset
        self.pending_records = max(0, self.pending_records - count)
        if self.read_offset >= self.size:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self.size = 0
            self.read_offset = 0
            self.pending_records = 0
        self._save_offset()

    def _save_offset(self) -> None:
        tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
        tmp.write_bytes(struct.pack("<Q", self.read_offset))
        os.replace(tmp, self.offset_path)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
