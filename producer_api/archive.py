"""Answered results, kept compact: what lets one replica remember a million of them.

As Python objects, one remembered result costs about 700 bytes beyond its document: an entry
object, its id string, its op string, a float, an ordered-dict node. At the 1,000,000-result cap
that alone is ~700 MB. Here an answered result is instead:

* its id and document, compressed (zstd, level 1) together with up to ``SEGMENT_ENTRIES``
  neighbours in a *segment*; W1-sized documents (~300 bytes of JSON) come to 25-30 bytes each.
  A document over ``ALONE_BYTES`` gets a segment of its own, uncompressed, so a large matrix
  result costs no compression time on the event loop and no decompression on a hit;
* per entry, in arrays (12 bytes): where it ends in the segment and its id's length, when it
  was answered (float32, from the segment's first answer), an op code, whether it has a
  fingerprint, and the fingerprint (16 bytes, only in segments that hold a client id submitted
  here);
* two slots of 8 bytes in an open-addressing index from 32 bits of the id's hash to the
  entry's sequence number.

Entries are forgotten oldest first, a whole segment at a time. An index slot whose sequence
number is older than the oldest kept entry is free; the index is rebuilt (vectorised, a few
tens of ms at a million entries) once used and freed slots fill 80% of it.

Looking an id up costs a few index probes; reading a document out of a sealed segment
decompresses it (about 0.1 ms for a full one); the last few decompressed segments are kept,
since lookups cluster on recent results.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import zstandard

SEGMENT_ENTRIES = 1024
"""Most entries a segment holds; the most the archive forgets at once."""
SEGMENT_BYTES = 256 * 1024
"""A segment is sealed (compressed) once its documents reach this many bytes."""
ALONE_BYTES = 64 * 1024
"""A document at least this big is kept alone and uncompressed."""
FINGERPRINT_BYTES = 16
_NO_FINGERPRINT = bytes(FINGERPRINT_BYTES)
_KEY_MASK = (1 << 32) - 1
_MIN_SLOTS = 1024
_MAX_LOAD = 0.8
_PLAIN_SEGMENTS_KEPT = 4
# Level 1: on W1 results 30% smaller than zlib's level 1, in a third of the time.
_COMPRESSOR = zstandard.ZstdCompressor(level=1)
_DECOMPRESSOR = zstandard.ZstdDecompressor()


@dataclass(frozen=True, slots=True)
class Archived:
    """One answered result read back from the archive."""

    id: str
    op: str
    result: bytes
    fingerprint: bytes | None
    updated_at: float


class _Segment:
    """Consecutive entries; open (appendable, uncompressed) until sealed."""

    __slots__ = ("first", "ids", "docs", "ends", "id_lengths", "start", "offsets", "ops",
                 "fingerprints", "fingerprinted", "newest", "raw_bytes", "blob", "compressed")

    def __init__(self, first: int) -> None:
        self.first = first
        self.ids: list[bytes] | None = []
        self.docs: list[bytes] | None = []
        self.ends = array("I")  # where each entry's id and document end in the joined blob
        self.id_lengths = array("B")
        self.start = 0.0  # the first entry's answer time; the others' are offsets from it
        self.offsets = array("f")
        self.ops = array("H")
        self.fingerprints = bytearray()
        self.fingerprinted = array("B")
        self.newest = float("-inf")
        self.raw_bytes = 0
        self.blob = b""
        self.compressed = False

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def sealed(self) -> bool:
        return self.docs is None

    def add(self, rid: bytes, doc: bytes, when: float, op: int,
            fingerprint: bytes | None) -> None:
        assert self.ids is not None and self.docs is not None
        if not self.offsets:
            self.start = when
        self.ids.append(rid)
        self.docs.append(doc)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(rid) + len(doc))
        self.id_lengths.append(len(rid))
        self.offsets.append(when - self.start)
        self.newest = max(self.newest, when)
        self.ops.append(op)
        # Fingerprints (client ids only) take room from a segment's first one on.
        if fingerprint is not None or self.fingerprints:
            if not self.fingerprints:
                self.fingerprints += _NO_FINGERPRINT * len(self.fingerprinted)
            self.fingerprints += _fixed(fingerprint)
        self.fingerprinted.append(fingerprint is not None)
        self.raw_bytes += len(doc)

    def time(self, i: int) -> float:
        """When entry ``i`` was answered (to float32's precision past the first: about a
        quarter of a millisecond an hour after it)."""
        return self.start + self.offsets[i]

    def seal(self, compress: bool) -> None:
        """Join (and compress) the ids and documents into one blob, each id before its
        document: a document names its id, which then compresses to a back-reference."""
        assert self.ids is not None and self.docs is not None
        joined = b"".join(part for pair in zip(self.ids, self.docs, strict=True)
                          for part in pair)
        # zstandard hands back its output in a buffer of the input's size: keep a copy.
        self.blob = bytes(memoryview(_COMPRESSOR.compress(joined))) if compress else joined
        self.compressed = compress
        self.ids = self.docs = None

    def plain(self) -> bytes:
        """The joined ids and documents of a sealed segment."""
        return _DECOMPRESSOR.decompress(self.blob) if self.compressed else self.blob

    def item(self, i: int, plain: bytes | None) -> tuple[bytes, bytes]:
        """The id and document of entry ``i`` (``plain``: the sealed segment's contents)."""
        if plain is None:
            assert self.ids is not None and self.docs is not None
            return self.ids[i], self.docs[i]
        start = self.ends[i - 1] if i else 0
        id_end = start + self.id_lengths[i]
        return plain[start:id_end], plain[id_end:self.ends[i]]

    def fingerprint(self, i: int) -> bytes | None:
        if not self.fingerprinted[i]:
            return None
        return bytes(self.fingerprints[i * FINGERPRINT_BYTES:(i + 1) * FINGERPRINT_BYTES])


class _Index:
    """Open addressing (linear probing) from a 32-bit key to a sequence number; a slot whose
    sequence number is below ``floor`` counts as free.

    Eight bytes a slot: the key, and the sequence number less ``base`` (the floor when the
    table was last built; between two builds fewer than ``slots`` numbers are handed out, so
    the difference fits 32 bits). A key is a filter, not an identity: the archive checks the
    id itself of every entry it finds."""

    def __init__(self) -> None:
        self.floor = 0
        self._alloc(_MIN_SLOTS, 0)

    def _alloc(self, slots: int, base: int) -> None:
        self.keys = np.zeros(slots, dtype=np.uint32)
        self.seqs = np.zeros(slots, dtype=np.uint32)
        self._k = self.keys.data
        self._s = self.seqs.data
        self.slots = slots
        self.base = base
        self.used = 0  # slots ever written since the last rebuild (live or stale)

    def find(self, key: int) -> list[int]:
        """Sequence numbers stored under ``key`` that are not below the floor."""
        k, s, n, base = self._k, self._s, self.slots, self.base
        low = self.floor - base
        i = key % n
        found: list[int] = []
        while True:
            stored = k[i]
            if stored == 0:
                return found
            if stored == key and s[i] >= low:
                found.append(s[i] + base)
            i = i + 1 if i + 1 < n else 0

    def put(self, key: int, seq: int) -> None:
        """Store ``key → seq`` in the first free slot of its run."""
        if self.used + 1 > _MAX_LOAD * self.slots:
            self._rebuild()
        k, s, n = self._k, self._s, self.slots
        low = self.floor - self.base
        i = key % n
        while k[i] != 0 and s[i] >= low:
            i = i + 1 if i + 1 < n else 0
        if k[i] == 0:
            self.used += 1
        k[i] = key
        s[i] = seq - self.base

    def _rebuild(self) -> None:
        """Re-place the live slots in a table twice their number (at least ``_MIN_SLOTS``)."""
        live = (self.keys != 0) & (self.seqs >= self.floor - self.base)
        keys = self.keys[live]
        seqs = (self.seqs[live].astype(np.int64) + (self.base - self.floor)).astype(np.uint32)
        self._alloc(max(_MIN_SLOTS, 2 * len(keys) + 1), self.floor)
        self.used = len(keys)
        slot = (keys % np.uint32(self.slots)).astype(np.int64)
        pending = np.arange(len(keys))
        while pending.size:
            at = slot[pending]
            free = self.keys[at] == 0
            movers = pending[free]
            # Several keys may want one free slot: the last write wins it, the rest move on.
            self.keys[slot[movers]] = keys[movers]
            won = self.keys[slot[movers]] == keys[movers]
            # Equal keys (two ids with one hash) would both "win": tell them apart by seq.
            self.seqs[slot[movers[won]]] = seqs[movers[won]]
            won_seq = self.seqs[slot[movers]] == seqs[movers]
            placed = np.zeros(len(keys), dtype=bool)
            placed[movers[won & won_seq]] = True
            pending = pending[~placed[pending]]
            slot[pending] = (slot[pending] + 1) % self.slots


class ResultArchive:
    """Answered results by id, oldest first, in compressed segments."""

    def __init__(self, segment_entries: int = SEGMENT_ENTRIES) -> None:
        self.segment_entries = max(1, segment_entries)
        self.bytes = 0
        self._segments: list[_Segment] = []
        self._next = 0
        self._index = _Index()
        self._op_codes: dict[str, int] = {"": 0}
        self._op_names: list[str] = [""]
        self._plain: OrderedDict[int, bytes] = OrderedDict()

    def __len__(self) -> int:
        return self._next - self._index.floor

    def __contains__(self, request_id: str) -> bool:
        return self._locate(request_id) is not None

    def get(self, request_id: str) -> Archived | None:
        """The archived result of an id, if kept."""
        found = self._locate(request_id)
        if found is None:
            return None
        segment, i, doc = found
        return Archived(request_id, self._op_names[segment.ops[i]], doc,
                        segment.fingerprint(i), segment.time(i))

    def add(self, request_id: str, op: str, result: bytes, fingerprint: bytes | None,
            when: float) -> None:
        """Keep an answered result (the caller has checked the id is not kept already)."""
        rid = request_id.encode()
        alone = len(result) >= ALONE_BYTES
        segment = self._segments[-1] if self._segments else None
        if segment is None or segment.sealed or (alone and len(segment)):
            if segment is not None and not segment.sealed:
                segment.seal(compress=True)
            segment = _Segment(self._next)
            self._segments.append(segment)
        segment.add(rid, result, when, self._op_code(op), fingerprint)
        self._index.put(_key(request_id), self._next)
        self._next += 1
        self.bytes += len(result)
        if alone:
            segment.seal(compress=False)
        elif len(segment) >= self.segment_entries or segment.raw_bytes >= SEGMENT_BYTES:
            segment.seal(compress=True)

    def oldest(self) -> tuple[float, float] | None:
        """The first and last answer times of the oldest segment (what ``drop_oldest``
        forgets), or None if empty."""
        if not self._segments:
            return None
        oldest = self._segments[0]
        return oldest.start, oldest.newest

    def oldest_size(self) -> int:
        """How many entries ``drop_oldest`` would forget."""
        return len(self._segments[0]) if self._segments else 0

    def drop_oldest(self) -> None:
        """Forget the oldest segment."""
        segment = self._segments.pop(0)
        self.bytes -= segment.raw_bytes
        self._index.floor = segment.first + len(segment)
        self._plain.pop(segment.first, None)

    def _locate(self, request_id: str) -> tuple[_Segment, int, bytes] | None:
        rid = request_id.encode()
        # Newest first: an id forgotten by age and answered again is kept twice for a while.
        for seq in sorted(self._index.find(_key(request_id)), reverse=True):
            segment = self._segment_of(seq)
            i = seq - segment.first
            stored_id, doc = segment.item(i, self._contents(segment))
            if stored_id == rid:
                return segment, i, doc
        return None

    def _segment_of(self, seq: int) -> _Segment:
        segments = self._segments
        lo, hi = 0, len(segments) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if segments[mid].first <= seq:
                lo = mid
            else:
                hi = mid - 1
        return segments[lo]

    def _contents(self, segment: _Segment) -> bytes | None:
        if not segment.sealed:
            return None
        if not segment.compressed:
            return segment.blob
        plain = self._plain.get(segment.first)
        if plain is None:
            plain = segment.plain()
            self._plain[segment.first] = plain
            while len(self._plain) > _PLAIN_SEGMENTS_KEPT:
                self._plain.popitem(last=False)
        else:
            self._plain.move_to_end(segment.first)
        return plain

    def _op_code(self, op: str) -> int:
        code = self._op_codes.get(op)
        if code is None:
            if len(self._op_names) >= 65535:
                return 0  # read back as ""; only the op check of an id's re-submit uses it
            code = self._op_codes[op] = len(self._op_names)
            self._op_names.append(op)
        return code


def _key(request_id: str) -> int:
    """A non-zero 32-bit key for an id (stable within this process)."""
    return (hash(request_id) & _KEY_MASK) or 1


def _fixed(fingerprint: bytes | None) -> bytes:
    if fingerprint is None:
        return _NO_FINGERPRINT
    if len(fingerprint) != FINGERPRINT_BYTES:
        raise ValueError(f"a fingerprint is {FINGERPRINT_BYTES} bytes, not {len(fingerprint)}")
    return fingerprint
