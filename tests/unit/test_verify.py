"""verify_log and ``capgate audit verify``: an exported log edited, deleted, moved,
duplicated, forged or rewritten is caught at the right line and seq; gaps the outbox
announced and interleaved instances are not mistaken for tampering."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uuid6
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from capgate.audit_cli import audit
from capgate.events.canonical import canonical_json
from capgate.events.chain import GENESIS_HASH, seal
from capgate.events.checkpoint import Checkpointer, key_id
from capgate.events.verify import Reason, verify_log

T0 = datetime(2026, 11, 21, 19, 14, 47, tzinfo=UTC)


def new_id() -> str:
    return str(uuid6.uuid7())


class Chain:
    """One instance's outbox, as the JSONL file sink sees it: ``lines``."""

    def __init__(
        self, instance: str = "capgate-0", key: Ed25519PrivateKey | None = None, every: int = 4
    ) -> None:
        self.instance = instance
        self.seq = 0
        self.head = GENESIS_HASH
        self.lines: list[bytes] = []
        self.time = T0
        self.since = 0
        self.checkpointer = (
            Checkpointer(key, every_events=every, every_seconds=3600, instance_id=instance)
            if key is not None
            else None
        )

    def _seal(self, event: dict[str, Any]) -> bytes:
        body, self.head = seal(
            event, instance_id=self.instance, seq=self.seq + 1, prev_hash=self.head
        )
        self.seq += 1
        return body + b"\n"

    def add(self, event: dict[str, Any]) -> None:
        self.lines.append(self._seal(event))

    def decisions(self, count: int) -> Chain:
        for _ in range(count):
            self.time += timedelta(milliseconds=10)
            self.add(
                {
                    "schema_version": "capgate.decision_event.v1",
                    "event_type": "decision",
                    "event_id": new_id(),
                    "time": self.time.isoformat().replace("+00:00", "Z"),
                    "tenant_id": "acme",
                    "effect": "allow",
                    "note": f"event {self.seq + 1} ünï\n",
                }
            )
            if self.checkpointer is not None:
                self.since += 1
                if self.checkpointer.due(self.since, self.time):
                    self.add(self.checkpointer.event(self.seq, self.head, self.time, new_id))
                    self.since = 0
        return self

    def drop(self, count: int, delivered: int = 0) -> tuple[int, int, str]:
        """The outbox drops the next ``count`` events at its cap: sealed, and shipped to
        this sink only for the first ``delivered`` of them."""
        start = self.seq + 1
        for index in range(count):
            body = self._seal({"event_type": "decision", "event_id": new_id()})
            if index < delivered:
                self.lines.append(body)
        return start, self.seq, self.head

    def gap(self, start: int, end: int, last_hash: str) -> Chain:
        self.add(
            {
                "schema_version": "capgate.decision_event.v1",
                "event_type": "gap",
                "event_id": new_id(),
                "time": "2026-11-21T19:15:00.000000Z",
                "dropped": {
                    "from_seq": start,
                    "to_seq": end,
                    "count": end - start + 1,
                    "last_hash": last_hash,
                },
            }
        )
        return self


def edit(lines: list[bytes], number: int, *, rehash: bool = False, **changes: Any) -> list[bytes]:
    """A copy of ``lines`` with line ``number`` (1-based) changed; ``rehash``: the
    tamperer also recomputes the line's hash."""
    event = json.loads(lines[number - 1])
    event.update(changes)
    if rehash:
        body = {k: v for k, v in event.items() if k != "hash"}
        event["hash"] = hashlib.sha256(canonical_json(body)).hexdigest()
    copy = list(lines)
    copy[number - 1] = canonical_json(event) + b"\n"
    return copy


def reseal_from(lines: list[bytes], number: int, instance: str = "capgate-0") -> list[bytes]:
    """Re-chain every line of ``instance`` from line ``number`` on: what a tamperer who
    rewrites the log without the signing key can do."""
    copy = list(lines)
    head = json.loads(copy[number - 2])["hash"] if number > 1 else GENESIS_HASH
    for index in range(number - 1, len(copy)):
        event = json.loads(copy[index])
        if event["instance_id"] != instance:
            continue
        body = {k: v for k, v in event.items() if k not in ("hash", "prev_hash")}
        sealed, head = seal(body, instance_id=instance, seq=event["seq"], prev_hash=head)
        copy[index] = sealed + b"\n"
    return copy


def test_a_good_log_verifies() -> None:
    lines = Chain().decisions(20).lines
    report = verify_log(lines)
    assert report.ok and report.first is None
    assert (report.lines, report.events, len(report.instances)) == (20, 20, 1)
    assert report.summary() == (
        "OK: 20 events, 1 instance, 0 checkpoints (signatures not checked: no public key), "
        "0 gaps bridged"
    )


def test_a_good_log_with_signed_checkpoints() -> None:
    key = Ed25519PrivateKey.generate()
    lines = Chain(key=key, every=4).decisions(10).lines  # seq 5 and 10 are checkpoints
    assert [json.loads(line)["event_type"] for line in lines].count("checkpoint") == 2
    report = verify_log(lines, key.public_key())
    assert report.ok, report.problems
    assert (report.events, report.checkpoints, report.checkpoints_verified) == (12, 2, 2)
    assert report.instances[0].signed_through == 9
    assert report.instances[0].unsigned_tail == 3  # seq 10 (the checkpoint), 11, 12
    assert report.summary() == (
        "OK: 12 events, 1 instance, 2 checkpoints verified, 0 gaps bridged; "
        "3 events after the last signed checkpoint"
    )
    unchecked = verify_log(lines)
    assert unchecked.ok and not unchecked.signatures_checked
    assert (unchecked.checkpoints, unchecked.checkpoints_verified) == (2, 0)


def test_a_reformatted_export_still_verifies() -> None:
    """A SIEM may re-serialize events (key order, spaces, escapes): the hash is over
    the canonical form, not the bytes."""
    lines = Chain().decisions(5).lines
    reformatted = [
        json.dumps(dict(reversed(json.loads(line).items())), indent=1).replace("\n", "") + "\n"
        for line in lines
    ]
    assert reformatted[0].encode() != lines[0]
    assert verify_log(line.encode() for line in reformatted).ok
    edited = [*reformatted[:2], reformatted[2].replace('"allow"', '"deny"'), *reformatted[3:]]
    first = verify_log(line.encode() for line in edited).first
    assert first is not None and (first.line, first.reason) == (3, Reason.EDITED)


def test_one_line_edited() -> None:
    lines = edit(Chain().decisions(10).lines, 7, effect="deny")
    report = verify_log(lines)
    first = report.first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (7, 7, Reason.EDITED)
    assert "hash does not match the content" in first.detail
    assert len(report.problems) == 1  # the next line still links to the recorded hash


def test_one_line_edited_and_rehashed_breaks_the_link_to_the_next() -> None:
    lines = edit(Chain().decisions(10).lines, 7, rehash=True, effect="deny")
    first = verify_log(lines).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (8, 8, Reason.EDITED)
    assert "does not match the hash of seq 7 (line 7)" in first.detail


def test_the_last_line_edited_and_rehashed_is_caught_only_by_a_later_checkpoint() -> None:
    key = Ed25519PrivateKey.generate()
    chain = Chain(key=key, every=4).decisions(4)  # seq 1-4, checkpoint 5 over seq 4
    lines = edit(chain.lines, 4, rehash=True, effect="deny")
    # Without the checkpoint line, the rewritten tail looks fine: nothing signs it yet.
    assert verify_log(lines[:4], key.public_key()).ok
    first = verify_log(lines, key.public_key()).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (5, 5, Reason.EDITED)


def test_one_line_deleted() -> None:
    lines = Chain().decisions(10).lines
    del lines[6]  # seq 7
    report = verify_log(lines)
    first = report.first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (7, 7, Reason.DELETED)
    assert "seq 7 is missing between line 6 and this line (seq 8)" in first.detail
    assert report.summary().startswith("BROKEN at line 7 (seq 7): deleted: seq 7 is missing")


def test_several_lines_deleted() -> None:
    lines = Chain().decisions(10).lines
    del lines[3:6]  # seq 4, 5, 6
    first = verify_log(lines).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (4, 4, Reason.DELETED)
    assert "seqs 4..6 are missing (3 events)" in first.detail


def test_two_lines_swapped() -> None:
    lines = Chain().decisions(10).lines
    lines[6], lines[7] = lines[7], lines[6]  # line 7 holds seq 8, line 8 seq 7
    report = verify_log(lines)
    first = report.first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (7, 7, Reason.MOVED)
    assert "expected seq 7 after line 6, found seq 8; seq 7 is at line 8" in first.detail
    assert [(p.line, p.reason) for p in report.problems] == [(7, Reason.MOVED), (8, Reason.MOVED)]


def test_one_line_moved_to_the_end() -> None:
    lines = Chain().decisions(10).lines
    lines.append(lines.pop(2))  # seq 3 now last
    first = verify_log(lines).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (3, 3, Reason.MOVED)
    assert "seq 3 is at line 10" in first.detail


def test_one_line_duplicated() -> None:
    lines = Chain().decisions(10).lines
    lines.insert(7, lines[6])  # seq 7 twice: lines 7 and 8
    report = verify_log(lines)
    first = report.first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (8, 7, Reason.DUPLICATED)
    assert "seq 7 is already at line 7 (an identical copy)" in first.detail
    assert len(report.problems) == 1
    # At-least-once delivery repeats events: identical copies may be skipped.
    tolerant = verify_log(lines, allow_duplicates=True)
    assert tolerant.ok and tolerant.duplicates_skipped == 1
    assert "1 duplicate skipped" in tolerant.summary()


def test_a_forged_event_with_a_taken_seq_is_not_a_duplicate_to_skip() -> None:
    lines = Chain().decisions(10).lines
    forged = edit(lines, 7, rehash=True, effect="deny")[6]
    lines.insert(7, forged)
    first = verify_log(lines, allow_duplicates=True).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (8, 7, Reason.DUPLICATED)
    assert "another event" in first.detail


def test_a_forged_checkpoint_signature() -> None:
    key, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    # The forger rewrites the whole log and signs with their own key...
    lines = Chain(key=forger, every=4).decisions(8).lines
    first = verify_log(lines, key.public_key()).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (5, 5, Reason.BAD_SIGNATURE)
    assert f"not by the given key {key_id(key.public_key())!r}" in first.detail
    # ... or claims the real key_id: the signature still fails.
    spoofed = edit(lines, 5, key_id=key_id(key.public_key()))
    spoofed = reseal_from(spoofed, 5)
    first = verify_log(spoofed, key.public_key()).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (5, 5, Reason.BAD_SIGNATURE)
    assert "does not verify" in first.detail


def test_a_key_rotation_within_the_log() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    chain = Chain(key=old, every=4).decisions(4)
    chain.checkpointer = Checkpointer(
        new, every_events=4, every_seconds=3600, instance_id=chain.instance
    )
    lines = chain.decisions(4).lines  # checkpoints at seq 5 (old key) and 10 (new key)
    both = verify_log(lines, [old.public_key(), new.public_key()])
    assert both.ok and both.checkpoints_verified == 2
    first = verify_log(lines, new.public_key()).first
    assert first is not None and (first.line, first.reason) == (5, Reason.BAD_SIGNATURE)


def test_a_rewritten_and_rechained_log_is_caught_by_the_checkpoint() -> None:
    key = Ed25519PrivateKey.generate()
    lines = Chain(key=key, every=4).decisions(8).lines  # checkpoint at line 5, head seq 4
    rewritten = reseal_from(edit(lines, 3, effect="deny"), 3)
    report = verify_log(rewritten, key.public_key())
    first = report.first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (5, 5, Reason.BAD_CHECKPOINT)
    assert (
        "head hash does not match seq 4 at line 4: events in seqs 1..4 were rewritten"
        in first.detail
    )


def test_a_deletion_renumbered_and_rechained_is_caught_by_the_checkpoint() -> None:
    key = Ed25519PrivateKey.generate()
    lines = Chain(key=key, every=4).decisions(8).lines  # checkpoint at line 5, head seq 4
    renumbered = [
        canonical_json({**(e := json.loads(line)), "seq": e["seq"] - (e["seq"] > 3)}) + b"\n"
        for line in [*lines[:2], *lines[3:]]  # seq 3 deleted, later seqs shifted down
    ]
    first = verify_log(reseal_from(renumbered, 3), key.public_key()).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (4, 4, Reason.BAD_CHECKPOINT)
    assert "head seq 4 is not before the checkpoint" in first.detail


def test_a_correct_log_with_a_gap() -> None:
    key = Ed25519PrivateKey.generate()
    chain = Chain()
    chain.decisions(3)
    dropped = chain.drop(3)  # seq 4..6 dropped at the cap
    chain.decisions(4).gap(*dropped)  # 7..10, then the gap event at seq 11
    assert [json.loads(line)["seq"] for line in chain.lines] == [1, 2, 3, 7, 8, 9, 10, 11]
    report = verify_log(chain.lines)
    assert report.ok, report.problems
    assert report.gaps_bridged == 1
    assert report.summary().endswith("1 gap bridged")
    # With checkpoints: a gap no signed checkpoint covers yet is pointed out.
    chain.checkpointer = Checkpointer(
        key, every_events=1, every_seconds=60, instance_id=chain.instance
    )
    signed = verify_log(chain.lines, key.public_key())
    assert signed.ok and signed.gaps_unsigned == 1
    assert "1 gap not yet covered by one" in signed.summary()
    chain.decisions(1)  # seq 12, checkpoint 13 over it
    covered = verify_log(chain.lines, key.public_key())
    assert covered.ok and covered.gaps_unsigned == 0 and covered.checkpoints_verified == 1


def test_two_gaps_bridge_one_hole() -> None:
    chain = Chain().decisions(2)
    first_drop = chain.drop(2)  # 3..4
    second_drop = chain.drop(3)  # 5..7
    chain.decisions(2).gap(*first_drop).gap(*second_drop)
    report = verify_log(chain.lines)
    assert report.ok, report.problems
    assert report.gaps_bridged == 2


def test_a_gap_that_starts_before_the_hole() -> None:
    """The outbox dropped seqs 3..6, but this sink had received 3 and 4 already."""
    chain = Chain().decisions(2)
    dropped = chain.drop(4, delivered=2)
    chain.decisions(2).gap(*dropped)
    assert [json.loads(line)["seq"] for line in chain.lines] == [1, 2, 3, 4, 7, 8, 9]
    report = verify_log(chain.lines)
    assert report.ok, report.problems
    assert report.gaps_bridged == 1


def test_a_gap_that_does_not_cover_the_hole() -> None:
    chain = Chain().decisions(3)
    start, _, _ = chain.drop(3)  # 4..6 dropped
    chain.decisions(2)
    chain.gap(start, start + 1, chain.head)  # announces 4..5 only
    first = verify_log(chain.lines).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (4, 4, Reason.DELETED)


def test_a_gap_with_the_wrong_last_hash() -> None:
    chain = Chain().decisions(3)
    start, end, _ = chain.drop(3)
    chain.decisions(2).gap(start, end, "f" * 64)
    first = verify_log(chain.lines).first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (4, 7, Reason.EDITED)
    assert "the gap event at line 6 announces seqs up to 6 dropped" in first.detail


def test_two_instances_interleaved() -> None:
    a = Chain("capgate-a").decisions(6).lines
    b = Chain("capgate-b").decisions(6).lines
    lines = [line for pair in zip(a, b, strict=True) for line in pair]
    report = verify_log(lines)
    assert report.ok and len(report.instances) == 2 and report.events == 12
    assert report.summary().startswith("OK: 12 events, 2 instances")
    del lines[7]  # capgate-b seq 4
    report = verify_log(lines)
    first = report.first
    assert first is not None
    assert (first.line, first.seq, first.instance_id, first.reason) == (
        9,
        4,
        "capgate-b",
        Reason.DELETED,
    )
    assert report.summary().startswith("BROKEN at line 9 (instance capgate-b, seq 4): deleted")


def test_unparseable_lines() -> None:
    lines = Chain().decisions(5).lines
    lines[2] = b'{"truncated": \n'
    report = verify_log(lines)
    first = report.first
    assert first is not None
    assert (first.line, first.seq, first.reason) == (3, None, Reason.UNPARSEABLE)
    assert report.summary().startswith("BROKEN at line 3: unparseable: not JSON")
    duplicate_key = lines[0].replace(b"{", b'{"effect":"deny",', 1)
    assert verify_log([duplicate_key]).first.reason is Reason.UNPARSEABLE  # type: ignore[union-attr]
    not_sealed = verify_log([b'{"event_type": "decision"}\n']).first
    assert (
        not_sealed is not None and "no valid instance_id, seq, prev_hash, hash" in not_sealed.detail
    )


def test_blank_lines_are_skipped_but_counted() -> None:
    lines = Chain().decisions(5).lines
    lines.insert(2, b"\n")
    del lines[4]  # seq 4, now on line 5
    first = verify_log(lines).first
    assert first is not None and (first.line, first.seq) == (5, 4)


def test_the_first_event_must_link_to_genesis() -> None:
    lines = edit(Chain().decisions(2).lines, 1, rehash=True, prev_hash="1" * 64)
    first = verify_log(lines).first
    assert first is not None and (first.line, first.seq, first.reason) == (1, 1, Reason.EDITED)


def test_a_log_may_start_mid_chain() -> None:
    lines = Chain().decisions(10).lines[4:]  # rotated: starts at seq 5
    report = verify_log(lines)
    assert report.ok and report.instances[0].first_seq == 5


# The command line.


@pytest.fixture
def signed_log(tmp_path: Path) -> tuple[Path, Path, list[bytes]]:
    key = Ed25519PrivateKey.generate()
    public = tmp_path / "audit.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    lines = Chain(key=key, every=4).decisions(8).lines
    log = tmp_path / "decisions.jsonl"
    log.write_bytes(b"".join(lines))
    return log, public, lines


def test_cli_ok(signed_log: tuple[Path, Path, list[bytes]]) -> None:
    log, public, _ = signed_log
    result = CliRunner().invoke(audit, ["verify", str(log), "--public-key", str(public)])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "OK: 10 events, 1 instance, 2 checkpoints verified, 0 gaps bridged; "
        "1 event after the last signed checkpoint\n"
    )


def test_cli_several_public_keys(
    signed_log: tuple[Path, Path, list[bytes]], tmp_path: Path
) -> None:
    log, public, _ = signed_log
    other = tmp_path / "other.pub"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    args = ["verify", str(log), "--public-key", str(other)]
    assert CliRunner().invoke(audit, args).exit_code == 1
    assert CliRunner().invoke(audit, [*args, "--public-key", str(public)]).exit_code == 0


def test_cli_broken(signed_log: tuple[Path, Path, list[bytes]], tmp_path: Path) -> None:
    _, public, lines = signed_log
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(edit(lines, 3, effect="deny")))
    result = CliRunner().invoke(audit, ["verify", str(tampered), "--public-key", str(public)])
    assert result.exit_code == 1
    assert result.output.startswith("BROKEN at line 3 (seq 3): edited: hash does not match")
    as_json = CliRunner().invoke(audit, ["verify", str(tampered), "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["ok"] is False
    assert report["first"] == {
        "line": 3,
        "seq": 3,
        "instance_id": "capgate-0",
        "reason": "edited",
        "detail": report["first"]["detail"],
    }


def test_cli_gzip_and_stdin(signed_log: tuple[Path, Path, list[bytes]], tmp_path: Path) -> None:
    _, _, lines = signed_log
    compressed = tmp_path / "decisions.jsonl.gz"
    compressed.write_bytes(gzip.compress(b"".join(lines)))
    assert CliRunner().invoke(audit, ["verify", str(compressed)]).exit_code == 0
    piped = CliRunner().invoke(audit, ["verify", "-"], input=b"".join(lines[:-1]))
    assert piped.exit_code == 0 and piped.output.startswith("OK: 9 events")


def test_cli_unreadable_file_or_key(
    signed_log: tuple[Path, Path, list[bytes]], tmp_path: Path
) -> None:
    log, _, _ = signed_log
    missing = CliRunner().invoke(audit, ["verify", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    bad_key = tmp_path / "bad.pub"
    bad_key.write_text("not a key")
    result = CliRunner().invoke(audit, ["verify", str(log), "--public-key", str(bad_key)])
    assert result.exit_code == 2
    assert str(bad_key) in result.output
    directory = CliRunner().invoke(audit, ["verify", str(tmp_path)])
    assert directory.exit_code == 2
