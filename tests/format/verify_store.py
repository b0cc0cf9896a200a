#!/usr/bin/env python3
"""Independent verifier of a trailkeep store, written from FORMAT.md and
docs/audit-format.md only (no knowledge of the Rust sources).

Usage:
    python3 tests/format/verify_store.py [options] STORE_DIR [TOPIC ...]

Options:
    -v, --verbose     print per-segment / per-file details
    --zstd-cli        decode zstd batches by piping them through the `zstd`
                      command (only used when the `zstandard` module is missing)
    --derived-warn    report problems in derived files (.index, .timeindex,
                      .keyindex) as warnings, like `trailkeep verify`, which
                      rebuilds them instead of failing
    --vkey TEXT       trust this verifier key (vkey text) instead of deriving the
                      public key from <store>/keys/checkpoint.key

Standard library only; the optional `cryptography` package is used to verify
Ed25519 checkpoint signatures, and the optional `zstandard` module to decode
zstd batches.  Exit status: 0 when everything is consistent, 1 on any
mismatch (each one printed as `ERROR <file> @ byte <n>: <what>`), 2 on usage
errors.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

try:  # optional
    import zstandard  # type: ignore
except Exception:  # pragma: no cover
    zstandard = None

try:  # optional
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey, Ed25519PublicKey)
    from cryptography.hazmat.primitives import serialization
    from cryptography.exceptions import InvalidSignature
    HAVE_CRYPTO = True
except Exception:  # pragma: no cover
    HAVE_CRYPTO = False

# ---------------------------------------------------------------- constants
BATCH_MAGIC = b"TKB1"
BATCH_HEADER = 40
BATCH_BYTES_MAX = 32 << 20
RECORDS_PER_BATCH_MAX = 65536
RECORD_BYTES_MAX = 4 << 20
KEY_BYTES_MAX = 1024
HEADER_COUNT_MAX = 32
HEADER_NAME_BYTES_MAX = 255
HEADER_VALUE_BYTES_MAX = 4096
SEGMENT_BYTES_MAX = (1 << 32) - 1
INDEX_INTERVAL_BYTES = 4096
IDX_MAGIC = b"TKO1"
TIDX_MAGIC = b"TKT1"
KIDX_MAGIC = b"TKK1"
CURSOR_MAGIC = b"TKC1"
CURSOR_FILE_MAX = 256 << 10
TREE_MAGIC = b"TKMERKLE"
META_MAGIC = b"TKMRKMTA"
META_SLOT = 68
META_SLOT_OFFSETS = (0, 4096)
TREE_SIZE_MAX = 1 << 48
NOTE_BYTES_MAX = 128 << 10
EMPTY_ROOT = hashlib.sha256(b"").digest()
NAME_RE = re.compile(rb"^[A-Za-z0-9._-]{1,200}$")
SEG_RE = re.compile(r"^(\d{20})\.log$")


def crc32(b):
    return zlib.crc32(b) & 0xFFFFFFFF


def popcount(n):
    return bin(n).count("1")


def E(n):
    """Number of hashes a post-order tree file holds for n leaves."""
    return 2 * n - popcount(n)


def sha(b):
    return hashlib.sha256(b).digest()


def leaf_hash(leaf):
    return sha(b"\x00" + leaf)


def node_hash(l, r):
    return sha(b"\x01" + l + r)


# ------------------------------------------------------------------ reporting
class Report:
    def __init__(self, verbose=False):
        self.errors = []
        self.notes = []
        self.verbose = verbose
        self.derived_warn = False

    def error(self, path, pos, msg):
        where = "%s @ byte %d" % (path, pos) if pos is not None else path
        line = "ERROR %s: %s" % (where, msg)
        self.errors.append(line)
        print(line)

    def derived(self, path, pos, msg):
        """A problem in a derived file (.index, .timeindex, .keyindex): readers
        rebuild these, so with --derived-warn it is only a warning."""
        if self.derived_warn:
            where = "%s @ byte %d" % (path, pos) if pos is not None else path
            line = "WARN (derived file, readers rebuild it) %s: %s" % (where, msg)
            self.notes.append(line)
            print(line)
        else:
            self.error(path, pos, msg + " [derived file]")

    def note(self, msg):
        self.notes.append(msg)
        print("note: " + msg)

    def info(self, msg):
        if self.verbose:
            print("  " + msg)


class Stop(Exception):
    """Raised to abandon the rest of a file after an unrecoverable error."""


# --------------------------------------------------------------- zstd helper
def zstd_decompress(frame, expected, use_cli):
    if zstandard is not None:
        return zstandard.ZstdDecompressor().decompress(frame, max_output_size=expected)
    if use_cli and shutil.which("zstd"):
        p = subprocess.run(["zstd", "-d", "-c", "-q"], input=frame,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise ValueError("zstd: " + p.stderr.decode(errors="replace").strip())
        return p.stdout
    return None


def zstd_frame_check(frame, expected):
    """What the standard library can check of a zstd frame: its magic and, when
    the frame header declares it, the content size."""
    if len(frame) < 6 or frame[:4] != b"\x28\xb5\x2f\xfd":
        return "zstd payload does not start with a zstd frame magic"
    fhd = frame[4]
    fcs_flag, single, did_flag = fhd >> 6, (fhd >> 5) & 1, fhd & 3
    if fhd & 0x08:
        return "zstd frame header has its reserved bit set"
    p = 5 + (0 if single else 1) + (0, 1, 2, 4)[did_flag]
    fcs_len = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if fcs_len:
        if len(frame) < p + fcs_len:
            return "zstd frame header truncated"
        fcs = int.from_bytes(frame[p:p + fcs_len], "little") + (256 if fcs_len == 2 else 0)
        if fcs != expected:
            return "zstd frame declares %d content bytes, payload_bytes is %d" % (fcs, expected)
    return None


# ------------------------------------------------------------ record decoding
class Record:
    __slots__ = ("offset", "timestamp", "event_time", "key", "headers",
                 "value", "path", "pos")

    def leaf_bytes(self):
        out = [b"\x01", struct.pack("<QQ", self.offset, self.timestamp)]
        if self.event_time is None:
            out.append(b"\x00")
        else:
            out.append(b"\x01" + struct.pack("<q", self.event_time))
        if self.key is None:
            out.append(b"\x00")
        else:
            out.append(b"\x01" + struct.pack("<I", len(self.key)) + self.key)
        out.append(struct.pack("<I", len(self.headers)))
        for n, v in self.headers:
            out.append(struct.pack("<I", len(n)) + n + struct.pack("<I", len(v)) + v)
        out.append(struct.pack("<I", len(self.value)) + self.value)
        return b"".join(out)


def decode_records(payload, count, base_offset, ts, path, payload_pos, rep,
                   compressed):
    """Decode `count` records that must fill `payload` exactly.  Positions in
    messages are file positions for uncompressed batches, and positions inside
    the decompressed payload (marked) for zstd batches."""
    def where(p):
        return payload_pos + p if not compressed else payload_pos

    def ctx(p):
        return "" if not compressed else " (byte %d of the decompressed payload)" % p

    recs = []
    p = 0
    n = len(payload)
    for i in range(count):
        start = p
        if p + 4 > n:
            rep.error(path, where(p), "record %d of batch: payload ends inside body_len%s"
                      % (i, ctx(p)))
            raise Stop
        body_len, = struct.unpack_from("<I", payload, p)
        p += 4
        if body_len > RECORD_BYTES_MAX:
            rep.error(path, where(start), "record offset %d: body_len %d > RECORD_BYTES_MAX%s"
                      % (base_offset + i, body_len, ctx(start)))
            raise Stop
        end = p + body_len
        if end > n:
            rep.error(path, where(start), "record offset %d: body_len %d runs past the payload%s"
                      % (base_offset + i, body_len, ctx(start)))
            raise Stop
        q = p
        try:
            if q + 1 > end:
                raise ValueError("no flags byte")
            flags = payload[q]
            q += 1
            if flags & ~0x03:
                raise ValueError("unknown record flags 0x%02x" % flags)
            ev = None
            if flags & 2:
                if q + 8 > end:
                    raise ValueError("event time past body end")
                ev, = struct.unpack_from("<q", payload, q)
                q += 8
            key = None
            if flags & 1:
                if q + 2 > end:
                    raise ValueError("key_len past body end")
                kl, = struct.unpack_from("<H", payload, q)
                q += 2
                if kl > KEY_BYTES_MAX:
                    raise ValueError("key_len %d > KEY_BYTES_MAX" % kl)
                if q + kl > end:
                    raise ValueError("key past body end")
                key = bytes(payload[q:q + kl])
                q += kl
            if q + 1 > end:
                raise ValueError("header_count past body end")
            hc = payload[q]
            q += 1
            if hc > HEADER_COUNT_MAX:
                raise ValueError("header_count %d > HEADER_COUNT_MAX" % hc)
            headers = []
            for h in range(hc):
                if q + 1 > end:
                    raise ValueError("header %d name_len past body end" % h)
                nl = payload[q]
                q += 1
                if q + nl > end:
                    raise ValueError("header %d name past body end" % h)
                name = bytes(payload[q:q + nl])
                q += nl
                try:
                    name.decode("utf-8")
                except UnicodeDecodeError:
                    raise ValueError("header %d name is not UTF-8" % h)
                if q + 2 > end:
                    raise ValueError("header %d value_len past body end" % h)
                vl, = struct.unpack_from("<H", payload, q)
                q += 2
                if vl > HEADER_VALUE_BYTES_MAX:
                    raise ValueError("header %d value_len %d > HEADER_VALUE_BYTES_MAX" % (h, vl))
                if q + vl > end:
                    raise ValueError("header %d value past body end" % h)
                headers.append((name, bytes(payload[q:q + vl])))
                q += vl
        except ValueError as e:
            rep.error(path, where(q), "record offset %d: %s%s" % (base_offset + i, e, ctx(q)))
            raise Stop
        r = Record()
        r.offset = base_offset + i
        r.timestamp = ts
        r.event_time = ev
        r.key = key
        r.headers = headers
        r.value = bytes(payload[q:end])
        r.path = path
        r.pos = where(start)
        recs.append(r)
        p = end
    if p != n:
        rep.error(path, where(p), "records end at payload byte %d but payload has %d bytes%s"
                  % (p, n, ctx(p)))
        raise Stop
    return recs


# ---------------------------------------------------------------- segments
class Batch:
    __slots__ = ("pos", "size", "base", "count", "ts", "flags", "payload_bytes")


class Segment:
    def __init__(self, base, path):
        self.base = base
        self.path = path
        self.batches = []
        self.records = []          # Record objects (empty if undecodable)
        self.decoded = True        # False when a zstd payload could not be decoded
        self.size = 0              # log size on disk
        self.data_end = 0          # end of the last batch
        self.zero_tail = 0
        self.end_offset = base


def header_check(hdr):
    h = bytearray(hdr)
    h[8:12] = b"\0\0\0\0"
    h[14:16] = b"\0\0"
    return crc32(bytes(h)) & 0xFFFF


def walk_segment(seg, active, rep, use_cli, counters):
    data = open(seg.path, "rb").read()
    seg.size = len(data)
    if seg.size > SEGMENT_BYTES_MAX:
        rep.error(seg.path, 0, "segment larger than SEGMENT_BYTES_MAX")
    pos = 0
    expect_base = seg.base
    prev_ts = None
    n = len(data)
    while pos < n:
        if n - pos < BATCH_HEADER:
            if active and data[pos:].count(0) == n - pos:
                seg.zero_tail = n - pos
                break
            rep.error(seg.path, pos, "%d trailing bytes, too short for a batch header" % (n - pos))
            break
        hdr = data[pos:pos + BATCH_HEADER]
        if hdr == bytes(BATCH_HEADER):
            if data[pos:].count(0) == n - pos:
                if active:
                    seg.zero_tail = n - pos
                else:
                    rep.error(seg.path, pos, "sealed segment ends in %d zero bytes "
                              "(only the active segment may)" % (n - pos))
                break
            rep.error(seg.path, pos, "all-zero batch header followed by non-zero bytes")
            break
        magic = hdr[0:4]
        batch_bytes, crc, version, flags, hcheck, base, count, pbytes, ts = \
            struct.unpack_from("<IIBBHQIIQ", hdr, 4)
        if magic != BATCH_MAGIC:
            rep.error(seg.path, pos, "bad batch magic %r" % magic)
            break
        if version != 1:
            rep.error(seg.path, pos + 12, "batch version %d != 1" % version)
            break
        if flags & ~0x03 or (flags & 3) > 1:
            rep.error(seg.path, pos + 13, "bad batch flags 0x%02x" % flags)
            break
        if header_check(hdr) != hcheck:
            rep.error(seg.path, pos + 14, "header_check 0x%04x != computed 0x%04x"
                      % (hcheck, header_check(hdr)))
            break
        if not (BATCH_HEADER <= batch_bytes <= BATCH_BYTES_MAX):
            rep.error(seg.path, pos + 4, "batch_bytes %d out of bounds" % batch_bytes)
            break
        if pos + batch_bytes > n:
            rep.error(seg.path, pos + 4, "batch_bytes %d runs past end of file (%d)"
                      % (batch_bytes, n))
            break
        if not (1 <= count <= RECORDS_PER_BATCH_MAX):
            rep.error(seg.path, pos + 24, "record_count %d out of bounds" % count)
            break
        compressed = (flags & 3) == 1
        if not compressed and pbytes != batch_bytes - BATCH_HEADER:
            rep.error(seg.path, pos + 28, "payload_bytes %d != batch_bytes - 40 = %d"
                      % (pbytes, batch_bytes - BATCH_HEADER))
            break
        if base + count >= 1 << 64:
            rep.error(seg.path, pos + 16, "base_offset + record_count overflows u64")
            break
        body = data[pos + 12:pos + batch_bytes]
        if crc32(body) != crc:
            rep.error(seg.path, pos + 8, "batch CRC 0x%08x != computed 0x%08x"
                      % (crc, crc32(body)))
            break
        if base != expect_base:
            rep.error(seg.path, pos + 16, "batch base_offset %d, expected %d (%s)"
                      % (base, expect_base, "first batch must equal the file name's base"
                         if expect_base == seg.base else "previous base + record_count"))
            break
        if prev_ts is not None and ts < prev_ts:
            rep.error(seg.path, pos + 32, "timestamp_us %d decreases (previous batch %d)"
                      % (ts, prev_ts))
        b = Batch()
        b.pos, b.size, b.base, b.count, b.ts, b.flags, b.payload_bytes = \
            pos, batch_bytes, base, count, ts, flags, pbytes
        seg.batches.append(b)
        payload = data[pos + BATCH_HEADER:pos + batch_bytes]
        if compressed:
            counters["zstd_batches"] += 1
            msg = zstd_frame_check(payload, pbytes)
            if msg:
                rep.error(seg.path, pos + BATCH_HEADER, msg)
                break
            try:
                raw = zstd_decompress(payload, pbytes, use_cli)
            except Exception as e:
                rep.error(seg.path, pos + BATCH_HEADER, "zstd payload does not decode: %s" % e)
                break
            if raw is None:
                seg.decoded = False
                counters["zstd_skipped"] += 1
            else:
                if len(raw) != pbytes:
                    rep.error(seg.path, pos + 28, "decompressed length %d != payload_bytes %d"
                              % (len(raw), pbytes))
                    break
                payload = raw
        if not compressed or seg.decoded:
            try:
                seg.records.extend(decode_records(payload, count, base, ts, seg.path,
                                                  pos + BATCH_HEADER, rep, compressed))
            except Stop:
                break
        expect_base = base + count
        prev_ts = ts
        pos += batch_bytes
    seg.data_end = pos if not seg.zero_tail else n - seg.zero_tail
    if seg.batches:
        last = seg.batches[-1]
        seg.data_end = last.pos + last.size
    seg.end_offset = expect_base
    return data


# ------------------------------------------------------------- index files
def read_framed(path, data, magic, entry_size, rep):
    """Return (header dict, entries bytes) or None after reporting."""
    if len(data) < 40:
        rep.derived(path, 0, "framed index shorter than its 40-byte header")
        return None
    m, ver, flags, base, log_bytes, count, ecrc, reserved, hcrc = \
        struct.unpack_from("<4sHHQQIIII", data, 0)
    ok = True
    if crc32(data[0:36]) != hcrc:
        rep.derived(path, 36, "header_crc 0x%08x != computed 0x%08x" % (hcrc, crc32(data[0:36])))
        ok = False
    if ver != 1:
        rep.derived(path, 4, "version %d != 1" % ver)
        ok = False
    allowed = 1 if magic == TIDX_MAGIC else 0
    if flags & ~allowed:
        rep.derived(path, 6, "unknown flags 0x%04x" % flags)
        ok = False
    if reserved != 0:
        rep.derived(path, 32, "reserved field is %d, not zero" % reserved)
        ok = False
    if len(data) != 40 + count * entry_size:
        rep.derived(path, 24, "file is %d bytes, header says 40 + %d x %d"
                  % (len(data), count, entry_size))
        ok = False
    elif crc32(data[40:]) != ecrc:
        rep.derived(path, 28, "entries_crc 0x%08x != computed 0x%08x" % (ecrc, crc32(data[40:])))
        ok = False
    if not ok:
        return None
    return dict(flags=flags, base=base, log_bytes=log_bytes, count=count), data[40:]


def expected_offset_entries(seg, sealed):
    out = []
    last_pos = None
    for b in seg.batches:
        if last_pos is None or b.pos - last_pos >= INDEX_INTERVAL_BYTES:
            out.append((b.base - seg.base, b.pos))
            last_pos = b.pos
    if sealed and seg.batches and out[-1][1] != seg.batches[-1].pos:
        b = seg.batches[-1]
        out.append((b.base - seg.base, b.pos))
    return out


def expected_time_entries(seg):
    out = []
    prev = None
    for b in seg.batches:
        if prev is None or b.ts > prev:
            out.append((b.ts, b.base - seg.base))
        prev = b.ts
    return out


def check_index_files(seg, sealed, durably_sealed, rep):
    by_pos = {b.pos: b for b in seg.batches}
    by_rel = {b.base - seg.base: b for b in seg.batches}
    for kind, magic, esz in (("index", IDX_MAGIC, 8), ("timeindex", TIDX_MAGIC, 12)):
        path = seg.path[:-4] + "." + kind
        if not os.path.exists(path):
            if durably_sealed:
                rep.derived(path, None, "missing: a durably sealed segment has framed index files")
            else:
                rep.note("%s absent (derived; readers rebuild it)" % path)
            continue
        data = open(path, "rb").read()
        framed = data[:4] == magic
        hdr = None
        if framed:
            r = read_framed(path, data, magic, esz, rep)
            if r is None:
                continue
            hdr, body = r
            if hdr["base"] != seg.base:
                rep.derived(path, 8, "base_offset %d != segment base %d" % (hdr["base"], seg.base))
            stale = hdr["log_bytes"] != seg.size
            if stale:
                if sealed:
                    rep.derived(path, 16, "log_bytes %d != .log size %d" % (hdr["log_bytes"], seg.size))
                else:
                    rep.note("%s: framed but log_bytes %d != active log size %d (stale, "
                             "not used by readers)" % (path, hdr["log_bytes"], seg.size))
                    continue
        else:
            if durably_sealed:
                rep.derived(path, 0, "durably sealed segment has a legacy (unframed) %s" % kind)
            if len(data) % esz:
                if not sealed:
                    rep.note("%s: legacy file with a %d-byte partial entry at the end"
                             % (path, len(data) % esz))
                else:
                    rep.derived(path, len(data) - len(data) % esz, "partial trailing entry")
            body = data[:len(data) - len(data) % esz]
        entries = [struct.unpack_from("<II" if esz == 8 else "<QI", body, i)
                   for i in range(0, len(body), esz)]
        base_pos = 40 if framed else 0
        # every entry must point at a batch
        for i, e in enumerate(entries):
            epos = base_pos + i * esz
            if kind == "index":
                rel, bpos = e
                b = by_pos.get(bpos)
                if b is None:
                    rep.derived(path, epos + 4, "entry %d: position %d is not a batch start" % (i, bpos))
                elif b.base - seg.base != rel:
                    rep.derived(path, epos, "entry %d: relative offset %d, batch at %d has %d"
                              % (i, rel, bpos, b.base - seg.base))
            else:
                ts, rel = e
                b = by_rel.get(rel)
                if b is None:
                    rep.derived(path, epos + 8, "entry %d: relative offset %d is not a batch's base"
                              % (i, rel))
                elif b.ts != ts:
                    rep.derived(path, epos, "entry %d: timestamp %d, batch at rel %d has %d"
                              % (i, ts, rel, b.ts))
            if i and (entries[i][0] <= entries[i - 1][0] or entries[i][1] <= entries[i - 1][1]):
                rep.derived(path, epos, "entry %d does not strictly increase" % i)
        # exactness / sparseness rules
        if kind == "index":
            exp = expected_offset_entries(seg, sealed or framed)
            if entries and entries[0] != (0, 0):
                rep.derived(path, base_pos, "first offset entry is %s, not (0, 0)" % (entries[0],))
            if (framed or sealed) and seg.batches and entries and \
                    entries[-1][1] != seg.batches[-1].pos:
                rep.derived(path, base_pos + (len(entries) - 1) * esz,
                          "last offset entry %s does not name the batch that ends the file "
                          "(at %d)" % (entries[-1], seg.batches[-1].pos))
            if framed or sealed:
                if entries != exp:
                    # FORMAT.md states this interval rule exactly, but segments written by
                    # several appender processes do not follow it (see the report):
                    # only a note, the entries themselves were confirmed above.
                    rep.note("%s: offset index entries %s differ from FORMAT.md's "
                             "INDEX_INTERVAL_BYTES rule %s (entries confirmed; not an error)"
                             % (path, short(entries), short(exp)))
            else:
                if entries and entries != exp[:len(entries)]:
                    rep.note("%s: legacy offset index is not a prefix of the rule's entries" % path)
        else:
            exp = expected_time_entries(seg)
            exact = framed and hdr["flags"] & 1
            if exact:
                if entries != exp:
                    rep.derived(path, base_pos, "exact time index entries %s differ from the "
                              "exactness rule %s" % (short(entries), short(exp)))
            elif framed:
                rep.note("%s: framed time index without the exact flag (hints)" % path)
            else:
                if entries and entries != exp[:len(entries)]:
                    rep.note("%s: legacy time index is not exact (hints only)" % path)
        rep.info("%s: %s, %d entries" % (os.path.basename(path),
                                          "framed" if framed else "legacy", len(entries)))


def short(lst, n=4):
    if len(lst) <= 2 * n:
        return str(lst)
    return "[%s, ... %d more ..., %s]" % (", ".join(map(str, lst[:n])), len(lst) - 2 * n,
                                         ", ".join(map(str, lst[-n:])))


def fnv1a64(b):
    h = 0xcbf29ce484222325
    for c in b:
        h ^= c
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def check_keyindex(seg, rep):
    path = seg.path[:-4] + ".keyindex"
    if not os.path.exists(path):
        return
    data = open(path, "rb").read()
    if len(data) < 12 or data[:4] != KIDX_MAGIC:
        rep.derived(path, 0, "bad key index magic/size")
        return
    count, ecrc = struct.unpack_from("<II", data, 4)
    if len(data) != 12 + 12 * count:
        rep.derived(path, 4, "size %d != 12 + 12 x %d" % (len(data), count))
        return
    if crc32(data[12:]) != ecrc:
        rep.derived(path, 8, "entries CRC mismatch")
        return
    entries = [struct.unpack_from("<QI", data, 12 + 12 * i) for i in range(count)]
    for i in range(1, count):
        if entries[i] < entries[i - 1]:
            rep.derived(path, 12 + 12 * i, "entries not sorted by (hash, relative offset)")
            break
    if not seg.decoded:
        rep.note("%s: %d entries, structure checked; content not (payload not decoded)"
                 % (path, count))
        return
    exp = []
    for r in seg.records:
        rel = r.offset - seg.base
        if r.key is not None:
            exp.append((fnv1a64(b"\x00" + r.key), rel))
        for n, v in r.headers:
            exp.append((fnv1a64(b"\x01" + n + b"\x00" + v), rel))
    exp_sorted = sorted(exp)
    if entries != exp_sorted:
        dedup = sorted(set(exp))
        if entries == dedup:
            rep.info("%s: matches after removing duplicate (hash, rel) pairs" % path)
        else:
            missing = set(exp) - set(entries)
            extra = set(entries) - set(exp)
            rep.derived(path, 12, "key index content differs from the records: %d entries, "
                      "expected %d (%d missing, %d unexpected)"
                      % (count, len(exp_sorted), len(missing), len(extra)))
            return
    rep.info("%s: %d entries, all match" % (os.path.basename(path), count))


# ------------------------------------------------------------------- Merkle
def post_order(leaves):
    out = []
    stack = []  # (size, hash)
    for lh in leaves:
        out.append(lh)
        cur = (1, lh)
        while stack and stack[-1][0] == cur[0]:
            s, h = stack.pop()
            cur = (s * 2, node_hash(h, cur[1]))
            out.append(cur[1])
        stack.append(cur)
    return out


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def root_from_post_order(hashes, size):
    """Fold the stored perfect-subtree roots for `size` (doc's formula)."""
    if size == 0:
        return EMPTY_ROOT
    roots = []
    start = 0
    for k in range(size.bit_length() - 1, -1, -1):
        if size >> k & 1:
            m = start + (1 << k)
            idx = E(m - 1) + k
            roots.append(hashes[idx])
            start = m
    acc = roots[-1]
    for r in reversed(roots[:-1]):
        acc = node_hash(r, acc)
    return acc


def check_merkle(tdir, n_records, leaves, leaves_known, rep, records=()):
    """Returns (tree_hashes list as computed, root) or None."""
    tpath = os.path.join(tdir, "merkle", "merkle.tree")
    mpath = os.path.join(tdir, "merkle", "merkle.meta")
    if not os.path.exists(tpath):
        rep.note("%s absent (tamper evidence off or not yet written)" % tpath)
        return None
    tdata = open(tpath, "rb").read()
    if len(tdata) < 16:
        rep.error(tpath, 0, "tree file shorter than its 16-byte header")
        return None
    magic, ver, width = struct.unpack_from("<8sII", tdata, 0)
    if magic != TREE_MAGIC or ver != 1 or width != 32:
        rep.error(tpath, 0, "bad tree header magic=%r version=%d width=%d" % (magic, ver, width))
        return None
    nh = (len(tdata) - 16) // 32
    if (len(tdata) - 16) % 32:
        rep.note("%s: %d bytes of a partial hash at the end (torn tail, dropped on open)"
                 % (tpath, (len(tdata) - 16) % 32))
    stored = [tdata[16 + 32 * i:16 + 32 * i + 32] for i in range(nh)]

    # sync file
    S = 0
    sync_root = EMPTY_ROOT
    if os.path.exists(mpath):
        mdata = open(mpath, "rb").read()
        best = None
        for so in META_SLOT_OFFSETS:
            slot = mdata[so:so + META_SLOT]
            if len(slot) < META_SLOT:
                continue
            mg, mv, mr, seq, size = struct.unpack_from("<8sIIQQ", slot, 0)
            root = slot[32:64]
            c, = struct.unpack_from("<I", slot, 64)
            valid = (mg == META_MAGIC and mv == 1 and mr == 0 and crc32(slot[:64]) == c
                     and size <= TREE_SIZE_MAX)
            if not valid:
                rep.note("%s: slot at byte %d not valid" % (mpath, so))
                continue
            if seq % 2 != META_SLOT_OFFSETS.index(so):
                rep.error(mpath, so + 16, "seq %d stored in the wrong slot (seq mod 2 = %d)"
                          % (seq, seq % 2))
            if best is None or seq > best[0]:
                best = (seq, size, root, so)
        if best is not None:
            _, S, sync_root, so = best
            rep.info("merkle.meta: sync point seq %d size %d (slot @%d)" % (best[0], S, so))
    else:
        rep.note("%s absent: sync size 0" % mpath)

    # Recompute what we can
    if leaves_known:
        computed = post_order(leaves)
    else:
        # leaves come from the tree file itself; only the interior structure is checked
        li = [2 * i - popcount(i) for i in range(n_records)]
        if len(stored) < E(n_records):
            rep.error(tpath, len(tdata), "tree holds %d hashes, %d records need %d"
                      % (len(stored), n_records, E(n_records)))
            return None
        given = [stored[i] if i < len(stored) else None for i in li]
        # records that are still held and decoded: their leaves are recomputed
        checked = 0
        for r in records:
            i = li[r.offset]
            if leaf_hash(r.leaf_bytes()) != stored[i]:
                rep.error(r.path, r.pos, "record %d does not match its leaf hash #%d in %s"
                          % (r.offset, i, tpath))
            checked += 1
        if checked:
            rep.note("%s: leaves of the %d held records recomputed and compared; leaves "
                     "below offset %d taken from the tree file" % (tpath, checked,
                                                                  records[0].offset))
        computed = post_order(given)
        leaves[:] = given
    if S > n_records:
        rep.error(mpath, None, "sync point size %d exceeds the %d records in the log"
                  % (S, n_records))
    if len(stored) < E(S):
        rep.error(tpath, len(tdata), "tree file holds %d hashes, sync point size %d needs %d"
                  % (len(stored), S, E(S)))
    else:
        if root_from_post_order(stored, S) != sync_root:
            rep.error(mpath, None, "sync point root does not fold from the stored tree "
                      "(size %d)" % S)
    upto = min(len(stored), len(computed))
    leaf_at = {}
    if leaves_known:
        leaf_at = {2 * j - popcount(j): j for j in range(len(leaves))}
    for i in range(upto):
        if stored[i] != computed[i]:
            j = leaf_at.get(i)
            if j is not None and j < len(records):
                r = records[j]
                rep.error(r.path, r.pos, "record %d does not match its leaf hash #%d in %s "
                          "(record changed after it was written, or tree damaged)"
                          % (j, i, tpath))
            if i < E(S):
                rep.error(tpath, 16 + 32 * i, "hash #%d differs from the hash recomputed "
                          "from the records" % i)
            else:
                rep.note("%s: hash #%d (after the sync point) differs from the records"
                         % (tpath, i))
            break
    if len(stored) > len(computed):
        rep.note("%s: %d hashes beyond the %d the log's records need"
                 % (tpath, len(stored) - len(computed), len(computed)))
    if S <= n_records and root_from_post_order(computed, S) != sync_root:
        rep.error(mpath, None, "sync point root for size %d differs from the root "
                  "recomputed from the records" % S)
    # cross-check the doc's post-order formula against direct RFC recursion
    if leaves and len(leaves) <= 5000:
        for s in sorted({1, 2, 3, 5, 7, len(leaves) // 2, len(leaves) - 1, len(leaves)}):
            if 0 < s <= len(leaves) and root_from_post_order(computed, s) != mth(leaves[:s]):
                rep.error(tpath, None, "internal: post-order fold differs from MTH for size %d" % s)
    return computed


# --------------------------------------------------------------- checkpoints
def b64dec_canonical(s):
    b = base64.b64decode(s, validate=True)
    if base64.b64encode(b).decode() != s:
        raise ValueError("non-canonical base64")
    return b


def load_signer(store, rep, vkey_text):
    """Return (key name, key id int, public key bytes or None)."""
    if vkey_text:
        name, kid, b = vkey_text.strip().split("+", 2)
        raw = b64dec_canonical(b)
        if len(raw) != 33 or raw[0] != 1:
            raise ValueError("vkey: key must be 0x01 || 32 bytes")
        pub = raw[1:]
        kid_c = int.from_bytes(sha(name.encode() + b"\n\x01" + pub)[:4], "big")
        if "%08x" % kid_c != kid:
            raise ValueError("vkey: key id %s != computed %08x" % (kid, kid_c))
        return name, kid_c, pub
    path = os.path.join(store, "keys", "checkpoint.key")
    if not os.path.exists(path):
        rep.note("%s absent: checkpoint signatures not verified" % path)
        return None
    text = open(path, "rb").read()
    if len(text) > 4096 or not text.endswith(b"\n") or text.count(b"\n") != 1:
        rep.error(path, 0, "signing key file must be one line ending in \\n, <= 4096 bytes")
    parts = text.decode().strip("\n").split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        rep.error(path, 0, "not a PRIVATE+KEY+<name>+<id>+<key> signer key")
        return None
    name, kid = parts[2], parts[3]
    raw = b64dec_canonical(parts[4])
    if len(raw) != 33 or raw[0] != 1:
        rep.error(path, 0, "key must be base64(0x01 || 32-byte seed)")
        return None
    if not HAVE_CRYPTO:
        return name, int(kid, 16), None
    pub = Ed25519PrivateKey.from_private_bytes(raw[1:]).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid_c = int.from_bytes(sha(name.encode() + b"\n\x01" + pub)[:4], "big")
    if "%08x" % kid_c != kid:
        rep.error(path, 0, "key id %s != computed %08x" % (kid, kid_c))
    return name, kid_c, pub


def parse_note(text, signer, origin_expected, where, rep):
    """Parse + verify one signed note.  Returns (size, root) or None."""
    path, pos = where
    if len(text) > NOTE_BYTES_MAX:
        rep.error(path, pos, "note larger than NOTE_BYTES_MAX")
        return None
    try:
        s = text.decode("utf-8")
    except UnicodeDecodeError:
        rep.error(path, pos, "note is not UTF-8")
        return None
    if not s.endswith("\n") or any((ord(c) < 0x20 and c != "\n") or ord(c) == 0x7f for c in s):
        rep.error(path, pos, "note must end in \\n and hold no control characters")
        return None
    cut = s.rfind("\n\n")
    if cut < 0:
        rep.error(path, pos, "note has no blank line")
        return None
    body = s[:cut + 1]
    sigs = s[cut + 2:].split("\n")[:-1]
    lines = body.split("\n")[:-1]
    if len(lines) != 3:
        rep.error(path, pos, "checkpoint body has %d lines, trailkeep writes exactly 3" % len(lines))
        return None
    origin, size_s, root_s = lines
    if origin != origin_expected:
        rep.error(path, pos, "origin %r != expected %r" % (origin, origin_expected))
    if not re.fullmatch(r"0|[1-9][0-9]*", size_s):
        rep.error(path, pos, "tree size %r is not canonical decimal" % size_s)
        return None
    try:
        root = b64dec_canonical(root_s)
        if len(root) != 32:
            raise ValueError("root is %d bytes" % len(root))
    except Exception as e:
        rep.error(path, pos, "root line: %s" % e)
        return None
    if len(sigs) > 64:
        rep.error(path, pos, "more than 64 signature lines")
    mine = 0
    for ln in sigs:
        m = re.fullmatch(r"\u2014 (\S+) (\S+)", ln)
        if not m:
            rep.error(path, pos, "malformed signature line %r" % ln)
            return None
        name, b = m.group(1), m.group(2)
        try:
            raw = b64dec_canonical(b)
        except Exception as e:
            rep.error(path, pos, "signature base64: %s" % e)
            return None
        if len(raw) != 68:
            # other signature types may differ in length; only ours must be 68
            continue
        kid = int.from_bytes(raw[:4], "big")
        if signer is None or name != signer[0] or kid != signer[1]:
            continue
        mine += 1
        if signer[2] is not None:
            try:
                Ed25519PublicKey.from_public_bytes(signer[2]).verify(raw[4:], body.encode())
            except InvalidSignature:
                rep.error(path, pos, "Ed25519 signature of %r does not verify" % name)
                return None
    if signer is not None and mine != 1:
        rep.error(path, pos, "%d signature lines from the store key (need exactly 1)" % mine)
        return None
    return int(size_s), root


def check_checkpoints(tdir, topic, store_id, signer, tree_hashes, n_records, rep):
    path = os.path.join(tdir, "checkpoints.log")
    if not os.path.exists(path):
        return []
    data = open(path, "rb").read()
    pos = 0
    out = []
    origin = "trailkeep/%s/%s" % (store_id, topic)
    while pos < len(data):
        if len(data) - pos < 8:
            rep.note("%s: torn last frame header at byte %d (ignored)" % (path, pos))
            break
        ln, c = struct.unpack_from("<II", data, pos)
        if pos + 8 + ln > len(data):
            rep.note("%s: torn last frame at byte %d (ignored)" % (path, pos))
            break
        text = data[pos + 8:pos + 8 + ln]
        if crc32(text) != c:
            if pos + 8 + ln == len(data):
                rep.note("%s: last frame at byte %d fails its CRC (torn, ignored)" % (path, pos))
            else:
                rep.error(path, pos + 4, "checkpoint frame CRC mismatch before the end")
            break
        r = parse_note(text, signer, origin, (path, pos + 8), rep)
        if r is not None:
            size, root = r
            if size > n_records:
                rep.error(path, pos + 8, "checkpoint size %d > %d records" % (size, n_records))
            elif tree_hashes is not None and size > 0 and len(tree_hashes) >= E(size):
                rr = root_from_post_order(tree_hashes, size)
                if rr != root:
                    rep.error(path, pos + 8, "checkpoint root for size %d is %s, recomputed %s"
                              % (size, root.hex(), rr.hex()))
            elif size == 0 and root != EMPTY_ROOT:
                rep.error(path, pos + 8, "empty checkpoint with a non-empty root")
            out.append((size, root))
        pos += 8 + ln
    for i in range(1, len(out)):
        if out[i][0] < out[i - 1][0]:
            rep.error(path, None, "checkpoint %d has size %d < previous %d"
                      % (i, out[i][0], out[i - 1][0]))
    return out


# ------------------------------------------------------------------ cursors
def check_cursor(path, start, end, rep):
    data = open(path, "rb").read()
    if len(data) > CURSOR_FILE_MAX:
        rep.error(path, 0, "cursor file over 256 KiB")
        return None
    whole = len(data) // 32
    best = None
    prev_seq = None
    valid = 0
    for i in range(whole):
        e = data[32 * i:32 * i + 32]
        m, c, off, at, seq = struct.unpack("<4sIQQQ", e)
        if m != CURSOR_MAGIC or crc32(e[8:]) != c:
            if i == whole - 1 and len(data) % 32 == 0:
                rep.note("%s: last entry at byte %d invalid (torn commit)" % (path, 32 * i))
            else:
                rep.error(path, 32 * i, "invalid cursor entry (magic/CRC) before the end")
            continue
        valid += 1
        if prev_seq is not None and seq != prev_seq + 1:
            rep.error(path, 32 * i + 24, "sequence %d does not follow %d" % (seq, prev_seq))
        if prev_seq is None and i == 0 and seq != 1 and whole > 1:
            rep.note("%s: first entry has sequence %d (compacted file?)" % (path, seq))
        prev_seq = seq
        if best is None or seq > best[0]:
            best = (seq, off, at)
    if len(data) % 32:
        rep.note("%s: %d-byte partial entry at the end (torn commit)" % (path, len(data) % 32))
    if whole and not valid:
        rep.error(path, 0, "cursor file has entries but none valid")
        return None
    if best is None:
        return None
    seq, off, at = best
    if off > end:
        rep.error(path, None, "committed position %d beyond the topic end %d" % (off, end))
    return best


# ------------------------------------------------------------------- topics
def read_offset_file(path, rep):
    if not os.path.exists(path):
        return None
    d = open(path, "rb").read()
    if len(d) != 12:
        rep.error(path, 0, "must be 12 bytes, is %d" % len(d))
        return None
    v, c = struct.unpack("<QI", d)
    if crc32(d[:8]) != c:
        rep.error(path, 8, "CRC mismatch")
        return None
    return v


def verify_topic(store, store_id, topic, signer, rep, use_cli, counters):
    tdir = os.path.join(store, "topics", topic)
    if not NAME_RE.match(topic.encode()) or topic.startswith("."):
        rep.error(tdir, None, "invalid topic name")
    try:
        cfg = json.load(open(os.path.join(tdir, "topic.json")))
    except Exception as e:
        rep.error(os.path.join(tdir, "topic.json"), None, "unreadable: %s" % e)
        cfg = {}
    start = read_offset_file(os.path.join(tdir, "start.offset"), rep) or 0
    sealed_off = read_offset_file(os.path.join(tdir, "sealed.offset"), rep)
    segs = []
    for f in os.listdir(tdir):
        m = SEG_RE.match(f)
        if m:
            segs.append(Segment(int(m.group(1)), os.path.join(tdir, f)))
        elif f.endswith(".log") and f != "checkpoints.log":
            rep.error(os.path.join(tdir, f), None, "segment name is not 20 decimal digits")
    segs.sort(key=lambda s: s.base)
    leftovers = [s for s in segs if s.base < start and s is not segs[-1]]
    if leftovers:
        rep.note("%s: %d segment(s) below start.offset %d (retention leftovers)"
                 % (topic, len(leftovers), start))
    all_records = []
    decodable = True
    expect = None
    prev_ts = None
    prev_broken = False
    for i, seg in enumerate(segs):
        active = i == len(segs) - 1
        durably = (not active) and (sealed_off is None or seg.base < sealed_off)
        nerr = len(rep.errors)
        walk_segment(seg, active, rep, use_cli, counters)
        broken = len(rep.errors) > nerr
        if expect is None:
            if seg.base > start:
                rep.error(seg.path, None, "first segment starts at %d above start.offset %d: "
                          "records removed outside retention" % (seg.base, start))
        elif seg.base != expect and not prev_broken:
            rep.error(seg.path, None, "segment base %d != previous segment's end offset %d (%s)"
                      % (seg.base, expect, "gap" if seg.base > expect else "overlap"))
        if not active and seg.batches and seg.data_end != seg.size:
            rep.error(seg.path, seg.data_end, "sealed segment has bytes after its last batch")
        if not active and not seg.batches and not broken:
            rep.error(seg.path, 0, "sealed segment holds no batch")
        if seg.batches and prev_ts is not None and seg.batches[0].ts < prev_ts:
            rep.error(seg.path, seg.batches[0].pos + 32, "timestamp decreases across segments "
                      "(%d < %d)" % (seg.batches[0].ts, prev_ts))
        if seg.batches:
            prev_ts = seg.batches[-1].ts
        expect = seg.end_offset
        prev_broken = broken
        if broken:
            decodable = False
            continue  # index files of a broken segment are not meaningful
        if not seg.decoded:
            decodable = False
        all_records.extend(seg.records)
        check_index_files(seg, not active, durably, rep)
        check_keyindex(seg, rep)
        rep.info("%s: %d batches, records %d..%d, %d bytes%s%s" % (
            os.path.basename(seg.path), len(seg.batches), seg.base, seg.end_offset,
            seg.size, ", zero tail %d" % seg.zero_tail if seg.zero_tail else "",
            "" if seg.decoded else ", zstd payload not decoded"))
    if sealed_off is not None and segs:
        if sealed_off > segs[-1].base:
            rep.error(os.path.join(tdir, "sealed.offset"), 0, "sealed.offset %d above the "
                      "active segment's base %d" % (sealed_off, segs[-1].base))
    first = segs[0].base if segs else start
    end = expect if expect is not None else start
    n = end
    # dense offsets are implied by the checks above; leaves
    leaves = []
    leaves_known = decodable and first == 0
    if leaves_known:
        leaves = [leaf_hash(r.leaf_bytes()) for r in all_records]
        if len(leaves) != n:
            rep.error(tdir, None, "internal: %d leaves for %d records" % (len(leaves), n))
    elif decodable:
        pass  # retention: held records are compared inside check_merkle
    else:
        why = "zstd payloads were not decoded or a segment is damaged"
        all_records = [r for r in all_records]  # whatever decoded is still compared
        rep.note("%s: Merkle leaves NOT recomputed from the records (%s); the tree's stored "
                 "leaves are used and only its interior nodes, roots and signatures are checked"
                 % (topic, why))
    tree = None
    if cfg.get("tamper_evidence", True):
        tree = check_merkle(tdir, n, leaves, leaves_known, rep, all_records)
    cps = check_checkpoints(tdir, topic, store_id, signer, tree, n, rep)
    root = root_from_post_order(tree, n) if tree is not None else None
    if tree is not None and leaves_known and n <= 5000 and root != mth(leaves):
        rep.error(tdir, None, "internal: root mismatch")
    groups = {}
    gdir = os.path.join(tdir, "groups")
    if os.path.isdir(gdir):
        for f in sorted(os.listdir(gdir)):
            if f.endswith(".cursor"):
                g = f[:-len(".cursor")]
                if not NAME_RE.match(g.encode()) or g.startswith("."):
                    rep.error(os.path.join(gdir, f), None, "invalid group name")
                groups[g] = check_cursor(os.path.join(gdir, f), first, end, rep)
            elif not f.endswith(".tmp"):
                rep.note("%s: unexpected file in groups/" % os.path.join(gdir, f))
    return dict(topic=topic, start=first, end=end, segments=len(segs), root=root,
                checkpoints=cps, groups=groups, compression=cfg.get("compression"),
                leaves_known=leaves_known, batches=sum(len(s.batches) for s in segs))


def main(argv):
    args = [a for a in argv if not a.startswith("-")]
    opts = [a for a in argv if a.startswith("-")]
    vkey = None
    if "--vkey" in argv:
        i = argv.index("--vkey")
        vkey = argv[i + 1]
        args.remove(vkey)
    if not args or "-h" in opts or "--help" in opts:
        print(__doc__)
        return 2
    rep = Report(verbose="-v" in opts or "--verbose" in opts)
    use_cli = "--zstd-cli" in opts
    rep.derived_warn = "--derived-warn" in opts
    store = args[0]
    topics_filter = args[1:]
    marker = os.path.join(store, "trailkeep.store")
    try:
        if open(marker, "rb").read() != b"trailkeep store format 1\n":
            rep.error(marker, 0, "unexpected store marker content")
    except OSError as e:
        rep.error(marker, None, "unreadable: %s" % e)
        return 1
    sid_path = os.path.join(store, "store.id")
    sid = open(sid_path, "rb").read()
    if not re.fullmatch(rb"[0-9a-f]{16}\n", sid):
        rep.error(sid_path, 0, "store.id must be 16 hex digits and a newline")
    store_id = sid.decode(errors="replace").strip()
    signer = None
    try:
        signer = load_signer(store, rep, vkey)
    except Exception as e:
        rep.error(vkey or os.path.join(store, "keys", "checkpoint.key"), None, str(e))
    if signer is not None and signer[0] != "trailkeep/" + store_id:
        rep.error(os.path.join(store, "keys", "checkpoint.key"), None,
                  "key name %r != trailkeep/<store-id>" % signer[0])
    counters = dict(zstd_batches=0, zstd_skipped=0)
    results = []
    tdir = os.path.join(store, "topics")
    for topic in sorted(os.listdir(tdir)) if os.path.isdir(tdir) else []:
        if topics_filter and topic not in topics_filter:
            continue
        if not os.path.isdir(os.path.join(tdir, topic)):
            continue
        results.append(verify_topic(store, store_id, topic, signer, rep, use_cli, counters))

    print()
    print("store %s (id %s): %d topic(s)" % (store, store_id, len(results)))
    for r in results:
        cp = r["checkpoints"][-1] if r["checkpoints"] else None
        cps = "none"
        if cp:
            cps = "latest size %d root %s%s" % (
                cp[0], cp[1].hex(), "" if cp[0] == r["end"] else " (tree has grown since)")
        print("  %-20s records %d..%d (%d), %d segments, %d batches, compression %s"
              % (r["topic"], r["start"], r["end"], r["end"] - r["start"], r["segments"],
                 r["batches"], r["compression"]))
        print("  %-20s root %s%s" % ("", r["root"].hex() if r["root"] else "-",
                                     "" if r["leaves_known"] else " (leaves taken from tree file)"))
        print("  %-20s %d checkpoints, %s" % ("", len(r["checkpoints"]), cps))
        for g, c in r["groups"].items():
            print("  %-20s group %s: position %s" % ("", g, "none" if c is None
                                                       else "%d (seq %d)" % (c[1], c[0])))
    if counters["zstd_batches"]:
        print("zstd batches: %d (%d with payload decoding skipped: %s)" % (
            counters["zstd_batches"], counters["zstd_skipped"],
            "no zstandard module; pass --zstd-cli to use the zstd command"
            if counters["zstd_skipped"] else "decoded"))
    print("signatures: %s" % ("verified (Ed25519, cryptography)" if HAVE_CRYPTO and signer
                              and signer[2] else "NOT verified (no cryptography package or key)"))
    if rep.errors:
        print("FAILED: %d error(s)" % len(rep.errors))
        return 1
    print("OK: all consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
