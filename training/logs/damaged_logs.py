"""Read what a log cut short still holds: an MCAP file without footer or summary, a SQLite3 file with a lost tail.

A robot that loses power mid-recording leaves an MCAP file that ends inside a record (or a zero-filled tail) and has
no summary, so rosbags refuses it ("File end magic is invalid"); a ``.db3`` whose header counts more pages than the
file holds is "malformed" to SQLite. Both still hold every message written before the cut:

- MCAP: ``SalvagedMcap`` walks the records from the start (opcode, length, body) and stops at the first one that is
  incomplete or invalid, keeping every complete message before it, including those at the head of a chunk cut in the
  middle (a zstd chunk as far as its decoder can decode the part written). It is a rosbags storage plugin, so
  deserialisation, type definitions and the rest of the pipeline are rosbags' own.
- SQLite3: ``salvage_sqlite`` copies the tables into a fresh database, message rows in id (recording) order up to the
  first SQLite cannot read. SQLite sees only the file's whole pages (the page the cut falls in is partly zero) and
  ``writable_schema`` lets it open a file shorter than its header says.

Each returns a ``Damage`` saying where reading stopped, for the warning and the extraction summary.
"""

from __future__ import annotations

import mmap
import sqlite3
import struct
from collections import Counter
from collections.abc import Collection, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import apsw
from rosbags.interfaces import Connection, ConnectionExtRosbag2
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.rosbag2.metadata import ReaderMetadata
from rosbags.rosbag2.storage_mcap import Schema, decompress, get_msgdef, get_qos

try:  # the zstd rosbags itself uses
    from compression import zstd
except ImportError:
    from backports import zstd

MAGIC = b"\x89MCAP0\r\n"
HEADER, FOOTER, SCHEMA, CHANNEL, MESSAGE, CHUNK, DATA_END = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
NAMES = {HEADER: "header", FOOTER: "footer", SCHEMA: "schema", CHANNEL: "channel", MESSAGE: "message", CHUNK: "chunk",
         0x07: "message index", 0x08: "chunk index", 0x09: "attachment", 0x0A: "attachment index", 0x0B: "statistics",
         0x0C: "metadata", 0x0D: "metadata index", 0x0E: "summary offset"}
MAX_TIME = 2**63 - 1


@dataclass(frozen=True)
class Damage:
    """Where reading a damaged log file stopped, and why; everything before ``position`` was read."""

    file: str
    position: str  # "byte 123456 of 200000" or "message 812"
    reason: str

    def __str__(self) -> str:
        return f"{Path(self.file).name}: stopped at {self.position} ({self.reason})"


class _Stop(Exception):
    """The record walk reached damage at ``offset``."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset, self.reason = offset, reason


def _string(body: bytes, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", body, at)
    return bytes(body[at + 4:at + 4 + n]).decode(), at + 4 + n


def _blob(body: bytes, at: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("<I", body, at)
    return bytes(body[at + 4:at + 4 + n]), at + 4 + n


def _records(data: bytes, start: int, end: int, base: int) -> Generator[tuple[int, bytes], None, int | None]:
    """(opcode, body) of the complete records in data[start:end]; _Stop at the first incomplete or invalid one.
    Returns the offset of the data-end record (an intact file's summary follows it) when it reached one.

    Records inside a chunk are walked the same way; an uncompressed chunk cut short yields its complete records
    first. ``base`` turns positions in ``data`` into file offsets for the report.
    """
    at = start
    while at < end:
        if end - at < 9:
            raise _Stop(base + at, "file ends inside a record header")
        op, length = struct.unpack_from("<BQ", data, at)
        if op == 0 or (0x10 <= op < 0x80):  # 0: a zero-filled tail, as a power loss leaves; >= 0x80: extensions
            raise _Stop(base + at, f"invalid record opcode 0x{op:02x}")
        body_end = at + 9 + length
        if op == DATA_END:
            return at
        if body_end > end:
            if op == CHUNK:
                yield from _partial_chunk(data, at, end, base)
            raise _Stop(base + at, f"file ends inside a {NAMES.get(op, f'0x{op:02x}')} record")
        if op == CHUNK:
            yield from _chunk_records(data[at + 9:body_end], base + at)
        else:
            yield op, data[at + 9:body_end]
        at = body_end
    return None


def _chunk_records(body: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    _, _, size, crc = struct.unpack_from("<QQQI", body, 0)
    compression, at = _string(body, 28)
    (compressed,) = struct.unpack_from("<Q", body, at)
    try:
        records = decompress(body[at + 8:at + 8 + compressed], compression, size, crc)
    except (ReaderError, ValueError, RuntimeError) as err:  # lz4/zstd raise their own types
        raise _Stop(offset, f"unreadable chunk ({err})") from err
    try:
        yield from _records(records, 0, len(records), 0)
    except _Stop as stop:
        raise _Stop(offset, f"damaged chunk ({stop.reason})") from stop


def _decoded_prefix(data: bytes, compression: str, offset: int) -> bytes:
    """What the head of a zstd stream cut short decodes to: a prefix of the chunk's records (the decoder emits only
    data it could decode completely). rosbag2's compressed presets are zstd; other codecs lose the chunk."""
    if compression == "zstd":
        return zstd.ZstdDecompressor().decompress(data)
    raise _Stop(offset, f"file ends inside a chunk compressed with {compression!r}, which cannot be read in part")


def _partial_chunk(data: bytes, at: int, end: int, base: int) -> Iterator[tuple[int, bytes]]:
    """The complete records at the head of the chunk record (at ``at``) that the file ends inside."""
    if end - at < 9 + 40:
        return
    compression, records_at = _string(data, at + 9 + 28)
    try:
        if compression:
            records = _decoded_prefix(data[records_at + 8:end], compression, base + at)
            yield from _records(records, 0, len(records), 0)
        else:
            yield from _records(data, records_at + 8, end, base)
    except _Stop as stop:
        where = stop.offset if not compression else base + at
        raise _Stop(where, f"{stop.reason} of an unfinished {compression or 'uncompressed'} chunk") from stop
    except (ValueError, RuntimeError, zstd.ZstdError) as err:  # the decoder's errors on a damaged stream
        raise _Stop(base + at, f"unfinished {compression} chunk does not decode ({err})") from err


class SalvagedMcap:
    """rosbags storage plugin for one MCAP file, read sequentially up to the first damaged record.

    Intact files read the same way (up to their data-end record), so a split bag's complete files need no special
    case. ``damage`` says where a damaged file stopped (None for an intact one).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.connections: list[Connection] = []
        self.metadata = ReaderMetadata(0, MAX_TIME, 0, 0, None, None, None, None)
        self.damage: Damage | None = None
        self.data: mmap.mmap | None = None

    def open(self) -> None:
        with self.path.open("rb") as file:
            if file.read(len(MAGIC)) != MAGIC:
                raise ReaderError(f"{self.path}: not an MCAP file (no MCAP magic at its start)")
            self.data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after the file closes
        schemas: dict[int, Schema] = {}
        counts: Counter = Counter()
        first, last = MAX_TIME, 0
        for op, body in self._walk():
            if op == SCHEMA:
                (key,) = struct.unpack_from("<H", body, 0)
                name, at = _string(body, 2)
                encoding, at = _string(body, at)
                definition, _ = _blob(body, at)
                schemas[key] = Schema(key, name, encoding, definition.decode())
            elif op == CHANNEL:
                self._add_channel(body, schemas)
            elif op == MESSAGE:
                channel, _, stamp = struct.unpack_from("<HIQ", body, 0)
                counts[channel] += 1
                first, last = min(first, stamp), max(last, stamp)
        self.connections = [c._replace(msgcount=counts[c.id]) for c in self.connections]
        total = sum(counts.values())
        self.metadata = self.metadata._replace(duration=last - first + 1 if total else 0,
                                               start_time=first if total else MAX_TIME,
                                               end_time=last + 1 if total else 0, message_count=total)

    def _add_channel(self, body: bytes, schemas: dict[int, Schema]) -> None:
        key, schema_id = struct.unpack_from("<HH", body, 0)
        topic, at = _string(body, 4)
        encoding, at = _string(body, at)
        (n,) = struct.unpack_from("<I", body, at)
        metadata = bytes(body[at + 4:at + 4 + n])
        if any(c.id == key for c in self.connections):
            return
        schema = schemas.get(schema_id)
        self.connections.append(Connection(key, topic, schema.name if schema else "__schemaless__",
                                           get_msgdef(schema), "", 0,
                                           ConnectionExtRosbag2(encoding, get_qos(metadata)), self))

    def _walk(self) -> Iterator[tuple[int, bytes]]:
        """Every complete record after the magic; records where the file is damaged in ``damage``."""
        size = len(self.data)
        try:
            data_end = yield from _records(self.data, len(MAGIC), size, 0)
        except _Stop as stop:
            self.damage = Damage(str(self.path), f"byte {stop.offset} of {size}", stop.reason)
            return
        if data_end is None:
            self.damage = Damage(str(self.path), f"byte {size} of {size}",
                                 "file ends between records, without summary or footer")
        elif self.data[-len(MAGIC):] != MAGIC:
            self.damage = Damage(str(self.path), f"byte {data_end} of {size}",
                                 "summary or footer damaged after the last message; no message lost")

    def messages(self, connections: Collection[Connection], start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time, raw CDR) of the complete messages, in file order."""
        wanted = {c.id: c for c in connections}
        for op, body in self._walk():
            if op != MESSAGE:
                continue
            channel, _, stamp = struct.unpack_from("<HIQ", body, 0)
            if channel in wanted and (start is None or stamp >= start) and (stop is None or stamp < stop):
                yield wanted[channel], stamp, bytes(body[22:])

    def close(self) -> None:
        if self.data is not None:
            self.data.close()
            self.data = None


class SalvageReader(Reader):
    """rosbags' rosbag2 Reader for one storage file, MCAP read by ``SalvagedMcap``."""

    STORAGE_PLUGINS = {**Reader.STORAGE_PLUGINS, ".mcap": SalvagedMcap}


class _WholePages(apsw.VFS):
    """SQLite's own file access, except that a file cut inside a page ends at its last whole page: the cells of a
    partly written page are zero past the cut, so a row read from it could come back silently wrong."""

    def __init__(self, name: str, page_size: int) -> None:
        super().__init__(name, "")
        self.page_size = page_size

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:  # noqa: N802 - apsw API
        return _WholePagesFile(self.page_size, name, flags)


class _WholePagesFile(apsw.VFSFile):
    def __init__(self, page_size: int, name: str | apsw.URIFilename | None, flags: list[int]) -> None:
        super().__init__("", name, flags)
        self.page_size = page_size

    def xFileSize(self) -> int:  # noqa: N802 - apsw API
        size = super().xFileSize()
        return size - size % self.page_size


def _copy_messages(src: apsw.Connection, dst: sqlite3.Connection) -> tuple[int, tuple[int, str] | None]:
    """Copy the message rows in id (recording) order up to the first SQLite cannot read; returns the rows copied and
    that row's id with SQLite's reason."""
    copied, last = 0, 0
    try:
        for row in src.execute("SELECT * FROM messages ORDER BY id"):
            dst.execute(f"INSERT INTO messages VALUES ({','.join('?' * len(row))})", row)
            copied, last = copied + 1, row[0]
    except (apsw.Error, sqlite3.IntegrityError) as err:  # a row, or the page holding it, that is not there
        return copied, (last + 1, str(err))
    return copied, None


def salvage_sqlite(db: Path, out: Path) -> tuple[Path, Damage | None]:
    """Copy what SQLite can read of ``db`` into a new ``out`` database: every table, and the message rows of the whole
    pages written. Returns the copy and where reading stopped (None when the whole file was readable)."""
    with db.open("rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise ReaderError(f"{db}: not a SQLite database")
    (page_size,) = struct.unpack_from(">H", header, 16)
    vfs_name = f"depth_node_whole_pages_{id(out)}"
    vfs = _WholePages(vfs_name, 65536 if page_size == 1 else page_size)
    dst = sqlite3.connect(out)
    damage = None
    try:
        src = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY, vfs=vfs_name)
        src.execute("PRAGMA writable_schema=ON")  # read a file shorter than its header says; nothing is written
        schema = src.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
        for _, _, sql in sorted(schema, key=lambda entry: entry[0] != "table"):  # tables before their indexes
            dst.execute(sql)
        for kind, name, _ in schema:
            if kind == "table" and name != "messages":
                rows = src.execute(f'SELECT * FROM "{name}"').fetchall()
                if rows:
                    dst.executemany(f'INSERT INTO "{name}" VALUES ({",".join("?" * len(rows[0]))})', rows)
        copied, first_error = _copy_messages(src, dst)
        if first_error:
            damage = Damage(str(db), f"message id {first_error[0]}", f"SQLite: {first_error[1]}; "
                            f"{copied} messages read")
        dst.commit()
        src.close()
    except (apsw.Error, sqlite3.DatabaseError) as err:
        raise ReaderError(f"{db}: SQLite cannot read its tables ({err})") from err
    finally:
        dst.close()
        vfs.unregister()
    return out, damage
