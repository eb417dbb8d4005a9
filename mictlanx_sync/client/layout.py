"""How one logical object lies on the wire as N chunks (protocol §P5).

Chunk i of object ``key`` is the ball ``{key}_{i}`` with ``ball_id == key`` and the five
required tags. This module is pure: it names chunks, builds and checks tags, and applies
the reading rules to a listing. It moves no bytes.

**The chunk manifest** (issue 13, "one hash per byte on verified reads"). Chunk 0 of an
object of N > 1 chunks written by this client also carries the tag ``chunks_sha256``:
SHA-256 of the N chunk checksums, lowercase hex, concatenated in index order (64
characters each, no separator; N itself is fixed by ``num_chunks``). The writer knows every
chunk's checksum before it writes chunk 0, the commit point (``writes.py``), so the tag
costs no pass over the data; chunks 1..N-1 keep exactly the tags of §P5. A reader that
verified each chunk against its own checksum (its bytes hashed once) proves the whole
object by hashing those N checksums (64·N bytes; with N = 1, c_0 is ``full_checksum``
itself), instead of hashing the object again
for ``full_checksum``: if every chunk hashes to c_i and SHA-256(c_0..c_{N-1}) equals the
manifest chunk 0 was written with, the bytes are the writer's, barring a SHA-256
collision (see ``full_hash.FullHash``). An object without the tag (upstream's writers,
older clients, one chunk: then c_0 is ``full_checksum``) gets the data pass as before.
The name is reserved for user tags, like the five required ones.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping, Optional, Sequence

import attrs

from ..protocol.errors import IntegrityError, NotFoundError, ValidationError
from ..protocol.ids import MAX_OBJECT_KEY_LENGTH, validate_id, validate_key

__all__ = [
    "REQUIRED_TAGS", "chunk_key", "validate_object_key", "validate_tags", "chunk_tags", "chunk_index",
    "ObjectLayout", "select_chunks", "MANIFEST_TAG", "RESERVED_TAGS", "chunks_manifest",
]

REQUIRED_TAGS = ("index", "chunk_size", "group_id", "num_chunks", "full_checksum")
#: Chunk 0's manifest of the chunk checksums (module docstring); not one of the five.
MANIFEST_TAG = "chunks_sha256"
#: Names a user's tags may not use.
RESERVED_TAGS = (*REQUIRED_TAGS, MANIFEST_TAG)
#: Tags a raw-ball write (``put_single_chunk``) may set itself.
SINGLE_CHUNK_ALLOWED = ("num_chunks", "full_checksum")


def chunk_key(key: str, index: int) -> str:
    """``{key}_{index}``: decimal, no padding."""
    return f"{key}_{index}"


def validate_object_key(bucket_id: str, key: str) -> None:
    """Ids of §P2.2, and a key short enough (240) for its chunk keys to stay valid."""
    validate_id(bucket_id, "bucket_id")
    validate_key(key, "key")
    if len(key) > MAX_OBJECT_KEY_LENGTH:
        raise ValidationError(f"key is {len(key)} characters; objects keys are limited to {MAX_OBJECT_KEY_LENGTH}")


def validate_tags(tags: Optional[Mapping[str, str]], allow: Sequence[str] = ()) -> dict[str, str]:
    """A copy of the user's tags: str -> str, no reserved names (except those in ``allow``)."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise ValidationError(f"tags must be a mapping of str to str, not {type(tags).__name__}")
    clean: dict[str, str] = {}
    for name, value in tags.items():
        if not isinstance(name, str) or not name:
            raise ValidationError(f"tag names must be non-empty strings: {name!r}")
        if not isinstance(value, str):
            raise ValidationError(f"tag {name!r} must have a string value, not {type(value).__name__}")
        if name in RESERVED_TAGS and name not in allow:
            raise ValidationError(f"tag {name!r} is reserved for the object layout")
        clean[name] = value
    return clean


def chunk_tags(user_tags: Mapping[str, str], key: str, index: int, size: int, num_chunks: int,
               full_checksum: str) -> dict[str, str]:
    """The user's tags plus the five required tags of chunk ``index``."""
    return {**user_tags, "index": str(index), "chunk_size": str(size), "group_id": key,
            "num_chunks": str(num_chunks), "full_checksum": full_checksum}


def chunks_manifest(checksums: Sequence[str]) -> str:
    """The ``chunks_sha256`` tag of an object whose chunks hash to ``checksums`` (in order)."""
    return hashlib.sha256("".join(c.lower() for c in checksums).encode("ascii")).hexdigest()


def _manifest(tags: Mapping[str, str], num_chunks: int) -> Optional[str]:
    """Chunk 0's manifest tag when usable: N > 1 and 64 hex digits; else ``None`` (no proof)."""
    value = str(tags.get(MANIFEST_TAG, "")).lower()
    if num_chunks < 2 or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        return None
    return value


def chunk_index(tags: Mapping[str, str]) -> Optional[int]:
    """The integer ``index`` tag, or ``None`` when absent or not an integer."""
    try:
        return int(tags.get("index", ""))
    except (TypeError, ValueError):
        return None


@attrs.frozen
class ObjectLayout:
    """What chunk 0 tells a reader: the chunk count, the whole-object checksum, the stride."""

    num_chunks: int
    full_checksum: str
    stride: int  # size of chunk 0: every chunk but the last has it (both splitting layouts)
    #: chunk 0's ``chunks_sha256`` (module docstring), ``None`` when absent or N == 1
    manifest: Optional[str] = None

    @classmethod
    def from_chunk0(cls, tags: Mapping[str, str], size: int, *, bucket_id: str, key: str) -> ObjectLayout:
        try:
            num_chunks = int(tags["num_chunks"])
            full_checksum = str(tags["full_checksum"])
        except (KeyError, ValueError):
            raise NotFoundError(f"{bucket_id}/{key} is not an object (chunk 0 lacks num_chunks/full_checksum)",
                                bucket_id=bucket_id, key=key) from None
        if num_chunks < 1:
            raise IntegrityError(f"{bucket_id}/{key}: num_chunks={num_chunks}", bucket_id=bucket_id, key=key)
        return cls(num_chunks, full_checksum.lower(), size, _manifest(tags, num_chunks))

    def offset(self, index: int) -> int:
        return index * self.stride

    @property
    def provable(self) -> bool:
        """Whether verified chunk checksums can prove the whole object (:meth:`proves`)."""
        return self.num_chunks == 1 or self.manifest is not None

    def proves(self, checksums: Sequence[str]) -> bool:
        """Whether chunks that hashed to ``checksums`` (in index order) are this object: one
        chunk's checksum is ``full_checksum``; N > 1 need chunk 0's manifest (module
        docstring). ``False`` proves nothing either way: the data pass decides."""
        if len(checksums) != self.num_chunks:
            return False
        if self.num_chunks == 1:
            return checksums[0].lower() == self.full_checksum
        return self.manifest is not None and chunks_manifest(checksums) == self.manifest

    def check_chunk_size(self, index: int, size: int, *, bucket_id: str, key: str) -> None:
        """A non-last chunk must have chunk 0's size (layout rule); the last at most that."""
        is_last = index == self.num_chunks - 1
        if (not is_last and size != self.stride) or (is_last and self.num_chunks > 1 and size > self.stride * 2):
            raise IntegrityError(f"{bucket_id}/{key}: chunk {index} has size {size}, layout expects "
                                 f"{self.stride}", bucket_id=bucket_id, key=key)


def select_chunks(metas: Iterable[object], *, bucket_id: str, key: str) -> list:
    """Apply reading rules 1-3 of §P5 to a listing of ``Metadata``: chunks 0..N-1 in order.

    Raises ``NotFoundError`` when chunk 0 or any index below N is missing, and
    ``IntegrityError`` when the chunks carry different ``full_checksum`` values.
    """
    by_index: dict[int, object] = {}
    for meta in metas:
        index = chunk_index(meta.tags)  # type: ignore[attr-defined]
        if index is not None and meta.key == chunk_key(key, index):  # type: ignore[attr-defined]
            by_index.setdefault(index, meta)
    if 0 not in by_index:
        raise NotFoundError(f"{bucket_id}/{key}: chunk 0 not found", bucket_id=bucket_id, key=key)
    first = by_index[0]
    layout = ObjectLayout.from_chunk0(first.tags, first.size, bucket_id=bucket_id, key=key)  # type: ignore[attr-defined]
    missing = [i for i in range(layout.num_chunks) if i not in by_index]
    if missing:
        raise NotFoundError(f"{bucket_id}/{key}: chunks {missing[:10]} missing", detail={"missing": missing},
                            bucket_id=bucket_id, key=key)
    chunks = [by_index[i] for i in range(layout.num_chunks)]
    versions = {str(m.tags.get("full_checksum", "")).lower() for m in chunks}  # type: ignore[attr-defined]
    if len(versions) != 1:
        raise IntegrityError(f"{bucket_id}/{key}: chunks of mixed versions", bucket_id=bucket_id, key=key)
    return chunks
