"""Verify an exported decision log: the hash chain, gaps and signed checkpoints (DESIGN §8).

Input: JSON Lines, one sealed event a line, as the JSONL file sink writes them (lines
from several instances may be interleaved: each ``instance_id`` is its own chain).
Two passes: the first parses each line, recomputes its ``hash`` (SHA-256 over the
RFC 8785 canonical JSON of the event without ``hash``) and collects gap events; the
second walks each instance's chain in file order and then checks the checkpoints.

Per instance, each event must carry ``seq`` = previous ``seq`` + 1 and ``prev_hash`` =
the previous event's ``hash`` (the first event of a chain, ``seq`` 1, links to
:data:`GENESIS_HASH`; a file may also start mid-chain, after rotation). A hole is
accepted only when gap events announce the missing seqs (``dropped.from_seq`` ..
``to_seq``; consecutive gaps may be joined; the first range may start before the hole,
as a sink may have received the oldest dropped events) ending exactly before the event
after the hole, whose ``prev_hash`` must be the gap's ``last_hash``: the outbox dropped
them at its cap. A
checkpoint's ``head`` must be an event of the log (or the last event of a bridged
hole), before the checkpoint; with the public key, its Ed25519 signature must verify.

The report names the first broken line and why:

- ``unparseable``: not JSON, or not a sealed event (no ``instance_id``/``seq``/hashes);
- ``edited``: the hash does not match the content, or the link to the previous event
  does not hold although the seqs follow (an event rewritten and re-hashed);
- ``deleted``: seqs missing, and no gap event announces them;
- ``moved``: seqs out of order (the missing seq is elsewhere in the file);
- ``duplicated``: a seq seen before (identical copies may be skipped: at-least-once
  delivery repeats events);
- ``bad_signature``: a checkpoint's signature does not verify with the public key;
- ``bad_checkpoint``: a checkpoint's head is not in the log or has another hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from capgate.events.canonical import canonical_json
from capgate.events.chain import GENESIS_HASH
from capgate.events.checkpoint import key_id, verify_head

__all__ = ["GENESIS_HASH", "InstanceSummary", "Problem", "Reason", "VerifyReport", "verify_log"]
_HEX64 = re.compile(r"[0-9a-f]{64}")


class Reason(StrEnum):
    UNPARSEABLE = "unparseable"
    EDITED = "edited"
    DELETED = "deleted"
    MOVED = "moved"
    DUPLICATED = "duplicated"
    BAD_SIGNATURE = "bad_signature"
    BAD_CHECKPOINT = "bad_checkpoint"


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken line. ``seq``: where the chain breaks: the missing seq for a
    deletion or a move, else the line's own seq (None when the line has none)."""

    line: int
    reason: Reason
    detail: str
    seq: int | None = None
    instance_id: str | None = None

    def describe(self, *, with_instance: bool = False) -> str:
        where = [f"instance {self.instance_id}"] if with_instance and self.instance_id else []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        place = f"line {self.line}" + (f" ({', '.join(where)})" if where else "")
        return f"{place}: {self.reason.value}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "seq": self.seq,
            "instance_id": self.instance_id,
            "reason": self.reason.value,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """One chain in the log. ``signed_through``: the highest head seq of a checkpoint
    whose signature verified (None without a public key or such a checkpoint);
    ``unsigned_tail``: events after it, which no signature covers yet."""

    instance_id: str
    events: int
    first_seq: int
    last_seq: int
    checkpoints: int
    signed_through: int | None

    @property
    def unsigned_tail(self) -> int:
        if self.signed_through is None:
            return self.last_seq - self.first_seq + 1
        return max(0, self.last_seq - self.signed_through)

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "signed_through": self.signed_through,
            "unsigned_tail": self.unsigned_tail,
        }


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_log` found. ``events``: lines that are sealed events, less
    the duplicates skipped; ``gaps_unsigned``: gap events used to bridge a hole that no
    verified checkpoint covers yet (as trustworthy as the tail of the log);
    ``checkpoints_verified``: head found and signature verified;
    ``signatures_checked``: a public key was given; ``problems``: in line order."""

    lines: int
    events: int
    instances: tuple[InstanceSummary, ...]
    gaps_bridged: int
    gaps_unsigned: int
    checkpoints: int
    checkpoints_verified: int
    signatures_checked: bool
    duplicates_skipped: int
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        """One line: ``OK: ...`` or ``BROKEN at line L (seq S): reason: detail``."""
        first = self.first
        if first is not None:
            return "BROKEN at " + first.describe(with_instance=len(self.instances) > 1)
        parts = [_plural(self.events, "event"), _plural(len(self.instances), "instance")]
        if self.signatures_checked:
            parts.append(f"{_plural(self.checkpoints_verified, 'checkpoint')} verified")
        else:
            parts.append(
                f"{_plural(self.checkpoints, 'checkpoint')} (signatures not checked: no public key)"
            )
        parts.append(f"{_plural(self.gaps_bridged, 'gap')} bridged")
        if self.duplicates_skipped:
            parts.append(f"{_plural(self.duplicates_skipped, 'duplicate')} skipped")
        text = "OK: " + ", ".join(parts)
        if self.signatures_checked:
            tail = sum(i.unsigned_tail for i in self.instances)
            notes = []
            if tail:
                notes.append(f"{_plural(tail, 'event')} after the last signed checkpoint")
            if self.gaps_unsigned:
                notes.append(f"{_plural(self.gaps_unsigned, 'gap')} not yet covered by one")
            if notes:
                text += "; " + ", ".join(notes)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": self.summary(),
            "first": self.first.to_dict() if self.first else None,
            "lines": self.lines,
            "events": self.events,
            "instances": [i.to_dict() for i in self.instances],
            "gaps_bridged": self.gaps_bridged,
            "gaps_unsigned": self.gaps_unsigned,
            "checkpoints": self.checkpoints,
            "checkpoints_verified": self.checkpoints_verified,
            "signatures_checked": self.signatures_checked,
            "duplicates_skipped": self.duplicates_skipped,
            "problem_count": len(self.problems),
            "problems": [p.to_dict() for p in self.problems[:100]],
        }


def verify_log(
    lines: Iterable[bytes],
    public_key: Ed25519PublicKey | Sequence[Ed25519PublicKey] | None = None,
    *,
    allow_duplicates: bool = False,
) -> VerifyReport:
    """Check the exported log ``lines`` (bytes, with or without their newline; blank
    lines are skipped but counted). ``public_key``: verify checkpoint signatures (None:
    reported as not checked); several keys (a rotation within the log): each checkpoint
    is checked with the one its ``key_id`` names. ``allow_duplicates``: skip exact
    copies of an earlier line of the same chain (at-least-once delivery) instead of
    reporting them."""
    problems: list[tuple[int, int, Problem]] = []  # (line, order, problem)
    if public_key is None:
        keys = None
    elif isinstance(public_key, Ed25519PublicKey):
        keys = {key_id(public_key): public_key}
    else:
        keys = {key_id(k): k for k in public_key}

    def report(order: int, problem: Problem) -> None:
        problems.append((problem.line, order, problem))

    # Pass 1: parse, recompute hashes, index by instance and seq, collect gaps.
    records: list[_Record] = []
    count = 0
    for count, raw in enumerate(lines, start=1):
        record = _parse(count, raw, report)
        if record is not None:
            records.append(record)
    chains: dict[str, _Chain] = {}
    for record in records:
        chain = chains.get(record.instance)
        if chain is None:
            chain = chains[record.instance] = _Chain()
        chain.by_seq.setdefault(record.seq, record)
        if record.dropped is not None:
            chain.gaps_to[record.dropped[1]].append(record)

    # Pass 2: the chain of each instance, in file order.
    bridged: list[_Record] = []
    duplicates = 0
    for record in records:
        chain = chains[record.instance]
        problem, linked = _link(chain, record, allow_duplicates, bridged)
        if problem is not None:
            report(2, problem)
        if not linked:  # a skipped copy, or a line out of the chain: do not resync on it
            record.skipped = True
            duplicates += problem is None
            continue
        chain.last = record
        chain.events += 1
        chain.first_seq = record.seq if chain.first_seq is None else chain.first_seq
        chain.last_seq = max(chain.last_seq, record.seq)

    # Checkpoints.
    verified = 0
    total_checkpoints = 0
    for record in records:
        if record.event_type != "checkpoint" or record.skipped:
            continue
        total_checkpoints += 1
        chain = chains[record.instance]
        chain.checkpoints += 1
        problem = _check_checkpoint(chains, record, keys)
        if problem is not None:
            report(3, problem)
            continue
        chain.anchored_through = max(chain.anchored_through, record.head["seq"])
        if keys is not None:
            verified += 1
            head_seq = record.head["seq"]
            if chain.signed_through is None or head_seq > chain.signed_through:
                chain.signed_through = head_seq

    gaps_unsigned = sum(
        1
        for gap in {id(g): g for g in bridged}.values()
        if (through := chains[gap.instance].signed_through) is None or gap.seq > through
    )
    problems.sort(key=lambda item: (item[0], item[1]))
    instances = tuple(
        InstanceSummary(
            instance_id=name,
            events=chain.events,
            first_seq=chain.first_seq or 0,
            last_seq=chain.last_seq,
            checkpoints=chain.checkpoints,
            signed_through=chain.signed_through,
        )
        for name, chain in chains.items()
    )
    return VerifyReport(
        lines=count,
        events=len(records) - duplicates,
        instances=instances,
        gaps_bridged=len({id(g) for g in bridged}),
        gaps_unsigned=gaps_unsigned if keys is not None else 0,
        checkpoints=total_checkpoints,
        checkpoints_verified=verified,
        signatures_checked=keys is not None,
        duplicates_skipped=duplicates,
        problems=tuple(p for _, _, p in problems),
    )


@dataclass(slots=True, eq=False)
class _Record:
    """What the checks need of one line (not the whole event: logs can be large)."""

    line: int
    instance: str
    seq: int
    prev_hash: str
    hash: str
    computed: str
    event_type: str
    head: Any = None
    key_id: Any = None
    signature: Any = None
    dropped: tuple[int, int, str] | None = None  # (from_seq, to_seq, last_hash)
    skipped: bool = False


@dataclass(slots=True)
class _Chain:
    by_seq: dict[int, _Record] = field(default_factory=dict)  # first line of each seq
    gaps_to: defaultdict[int, list[_Record]] = field(default_factory=lambda: defaultdict(list))
    seen: dict[int, _Record] = field(default_factory=dict)  # seqs linked so far
    last: _Record | None = None
    events: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    checkpoints: int = 0
    anchored_through: int = 0  # head seq of the last checkpoint that checked out
    signed_through: int | None = None


def _parse(line: int, raw: bytes, report: Any) -> _Record | None:
    text = raw.strip()
    if not text:
        return None
    try:
        event = _DECODER.decode(text.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        report(1, Problem(line, Reason.UNPARSEABLE, f"not JSON: {_short(exc)}"))
        return None
    if not isinstance(event, dict):
        report(1, Problem(line, Reason.UNPARSEABLE, "not a JSON object"))
        return None
    instance, seq = event.get("instance_id"), event.get("seq")
    prev_hash, claimed = event.get("prev_hash"), event.get("hash")
    missing = [
        name
        for name, ok in (
            ("instance_id", isinstance(instance, str) and instance != ""),
            ("seq", isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1),
            ("prev_hash", isinstance(prev_hash, str) and _HEX64.fullmatch(prev_hash)),
            ("hash", isinstance(claimed, str) and _HEX64.fullmatch(claimed)),
        )
        if not ok
    ]
    if missing:
        report(
            1,
            Problem(
                line,
                Reason.UNPARSEABLE,
                f"not a sealed event: no valid {', '.join(missing)}",
                seq=seq if "seq" not in missing else None,
                instance_id=instance if "instance_id" not in missing else None,
            ),
        )
        return None
    assert isinstance(instance, str) and isinstance(seq, int)
    assert isinstance(prev_hash, str) and isinstance(claimed, str)
    computed = _hash_as_written(text, claimed)
    if computed == claimed:
        computed = claimed  # one string for both: logs can be large
    else:
        try:  # reformatted by an export, or edited: hash the canonical form
            _STRICT_DECODER.decode(text.decode("utf-8"))
            body = {k: v for k, v in event.items() if k != "hash"}
            computed = hashlib.sha256(canonical_json(body)).hexdigest()
        except Exception as exc:  # duplicate keys; what JCS refuses (huge integers, ...)
            detail = f"no canonical JSON: {_short(exc)}"
            report(1, Problem(line, Reason.UNPARSEABLE, detail, seq, instance))
            return None
    event_type = event.get("event_type")
    record = _Record(
        line=line,
        instance=sys.intern(instance),
        seq=seq,
        prev_hash=prev_hash,
        hash=claimed,
        computed=computed,
        event_type=sys.intern(event_type) if isinstance(event_type, str) else "",
    )
    if computed != claimed:
        report(
            1,
            Problem(
                line,
                Reason.EDITED,
                f"hash does not match the content (content hashes to {computed[:16]}..., "
                f"line says {claimed[:16]}...)",
                seq,
                instance,
            ),
        )
    if record.event_type == "checkpoint":
        record.head = event.get("head")
        record.key_id = event.get("key_id")
        record.signature = event.get("signature")
    elif record.event_type == "gap":
        record.dropped = _dropped(event.get("dropped"), seq)
        if record.dropped is None:
            report(
                1,
                Problem(
                    line,
                    Reason.UNPARSEABLE,
                    "gap event without a valid dropped range (from_seq <= to_seq < seq, "
                    "count = to_seq - from_seq + 1, last_hash)",
                    seq,
                    instance,
                ),
            )
    return record


def _hash_as_written(text: bytes, claimed: str) -> str | None:
    """SHA-256 of the line without its ``"hash"`` member, as written: equal to
    ``claimed`` only if those bytes are the canonical body capgate hashed (SHA-256 is
    collision resistant), which spares re-serializing the event. None when the member
    is not found."""
    member = b'"hash":"' + claimed.encode("ascii") + b'"'
    at = text.find(member)
    if at < 1:
        return None
    end = at + len(member)
    if text[at - 1 : at] == b",":
        stripped = text[: at - 1] + text[end:]
    elif text[end : end + 1] == b",":
        stripped = text[:at] + text[end + 1 :]
    else:
        stripped = text[:at] + text[end:]
    return hashlib.sha256(stripped).hexdigest()


def _dropped(value: Any, seq: int) -> tuple[int, int, str] | None:
    if not isinstance(value, dict):
        return None
    start, end = value.get("from_seq"), value.get("to_seq")
    number, last_hash = value.get("count"), value.get("last_hash")
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, number))
    if not ints or not isinstance(last_hash, str) or not _HEX64.fullmatch(last_hash):
        return None
    assert isinstance(start, int) and isinstance(end, int)
    if not 1 <= start <= end < seq or number != end - start + 1:
        return None
    return start, end, last_hash


def _link(
    chain: _Chain, record: _Record, allow_duplicates: bool, bridged: list[_Record]
) -> tuple[Problem | None, bool]:
    """Check ``record`` against the chain so far: ``(problem or None, whether the
    record takes its place in the chain)``; a skipped copy is ``(None, False)``."""
    seq = record.seq
    earlier = chain.seen.get(seq)
    if earlier is not None:
        if allow_duplicates and earlier.hash == record.hash and earlier.computed == record.hash:
            return None, False
        same = "an identical copy" if earlier.hash == record.hash else "another event"
        detail = f"seq {seq} is already at line {earlier.line} ({same})"
        return _problem(record, Reason.DUPLICATED, detail), False
    last = chain.last
    if last is None:
        chain.seen[seq] = record
        if seq == 1 and record.prev_hash != GENESIS_HASH:
            return _problem(record, Reason.EDITED, "seq 1 does not link to the genesis hash"), True
        return None, True
    if seq < last.seq:
        detail = f"seq {seq} comes after seq {last.seq} (line {last.line}): out of order"
        return _problem(record, Reason.MOVED, detail), False
    chain.seen[seq] = record
    expected = last.seq + 1
    if seq == expected:
        if record.prev_hash != last.hash:
            detail = (
                f"prev_hash does not match the hash of seq {last.seq} (line {last.line}): "
                "one of them was rewritten"
            )
            return _problem(record, Reason.EDITED, detail), True
        return None, True
    gaps = _bridge(chain, expected, seq)
    if gaps:
        if gaps[0].dropped is not None and gaps[0].dropped[2] == record.prev_hash:
            bridged.extend(gaps)
            return None, True
        detail = (
            f"the gap event at line {gaps[0].line} announces seqs up to {seq - 1} "
            "dropped, but its last_hash is not this event's prev_hash"
        )
        return _problem(record, Reason.EDITED, detail), True
    elsewhere = chain.by_seq.get(expected)
    if elsewhere is not None:
        detail = (
            f"expected seq {expected} after line {last.line}, found seq {seq}; "
            f"seq {expected} is at line {elsewhere.line}"
        )
        return _problem(record, Reason.MOVED, detail, seq=expected), True
    missing = (
        f"seq {expected} is missing"
        if seq == expected + 1
        else f"seqs {expected}..{seq - 1} are missing ({seq - expected} events)"
    )
    detail = (
        f"{missing} between line {last.line} and this line (seq {seq}); no gap event announces them"
    )
    return _problem(record, Reason.DELETED, detail, seq=expected), True


def _bridge(chain: _Chain, start: int, end: int) -> list[_Record]:
    """Gap events whose dropped ranges, joined end to end, cover the missing seqs
    ``start..end-1`` and end exactly at ``end-1`` (empty when there are none); the first
    is the one ending there. A range may begin before ``start``: this sink had received
    the oldest dropped events before the outbox dropped them."""
    used: list[_Record] = []
    last = end - 1
    while True:
        candidates = [g for g in chain.gaps_to.get(last, ()) if g.dropped is not None]
        if not candidates:
            return []
        gap = min(candidates, key=lambda g: g.dropped[0] if g.dropped else 0)
        assert gap.dropped is not None
        used.append(gap)
        if gap.dropped[0] <= start:
            return used
        last = gap.dropped[0] - 1


def _check_checkpoint(
    chains: dict[str, _Chain], record: _Record, keys: dict[str, Ed25519PublicKey] | None
) -> Problem | None:
    head = record.head
    if not (
        isinstance(head, dict)
        and isinstance(head.get("instance_id"), str)
        and isinstance(head.get("seq"), int)
        and not isinstance(head.get("seq"), bool)
        and isinstance(head.get("hash"), str)
    ):
        return _problem(record, Reason.BAD_CHECKPOINT, "no valid head {instance_id, seq, hash}")
    head_seq, head_hash = head["seq"], head["hash"]
    if head["instance_id"] != record.instance:
        return _problem(
            record, Reason.BAD_CHECKPOINT, f"head names another instance: {head['instance_id']}"
        )
    if head_seq >= record.seq:
        return _problem(
            record, Reason.BAD_CHECKPOINT, f"head seq {head_seq} is not before the checkpoint"
        )
    if keys is not None:
        public_key = keys.get(record.key_id) if isinstance(record.key_id, str) else None
        if public_key is None:
            given = ", ".join(repr(k) for k in keys)
            return _problem(
                record,
                Reason.BAD_SIGNATURE,
                f"signed by key {record.key_id!r}, not by the given key {given}",
            )
        if not verify_head(public_key, head, record.signature):
            return _problem(
                record, Reason.BAD_SIGNATURE, "the signature over the head does not verify"
            )
    chain = chains[record.instance]
    target = chain.by_seq.get(head_seq)
    if target is not None:
        if target.computed != head_hash:
            since = chain.anchored_through + 1 if chain.anchored_through else min(chain.by_seq)
            return _problem(
                record,
                Reason.BAD_CHECKPOINT,
                f"head hash does not match seq {head_seq} at line {target.line}: "
                f"events in seqs {since}..{head_seq} were rewritten after it was signed",
            )
        return None
    for gaps in chain.gaps_to.values():
        for gap in gaps:
            if gap.dropped is not None and gap.dropped[0] <= head_seq <= gap.dropped[1]:
                if head_seq == gap.dropped[1] and gap.dropped[2] != head_hash:
                    return _problem(
                        record,
                        Reason.BAD_CHECKPOINT,
                        f"head hash does not match the last_hash of the gap at line {gap.line}",
                    )
                return None  # the head was dropped at the outbox's cap
    first_seq = min(chain.by_seq)
    if head_seq < first_seq:
        return None  # before the start of this file (rotated away)
    return _problem(
        record,
        Reason.BAD_CHECKPOINT,
        f"head seq {head_seq} is not in the log (deleted?)",
    )


def _problem(record: _Record, reason: Reason, detail: str, *, seq: int | None = None) -> Problem:
    return Problem(record.line, reason, detail, record.seq if seq is None else seq, record.instance)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
)
