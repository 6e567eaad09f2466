"""The miner's worker registry and authorized keys, driven with plain objects (no I/O, no clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from byteleap.errors import ConfigError, Forbidden, LinkError, PeerUnavailable
from byteleap.protocol.inventory import GpuInfo
from byteleap.protocol.worker_link.challenges import ChallengeCommit, GpuCommit, Reveal
from byteleap.protocol.worker_link.jobs import JobInfo, JobRefused, JobStatus
from byteleap.protocol.worker_link.leases import LeaseAck
from byteleap.protocol.worker_link.session import ErrorReply, Heartbeat, Unavailable
from byteleap.sessions.miner_registry import (
    CLOSE_GOING_AWAY,
    CLOSE_HEARTBEAT_TIMEOUT,
    CLOSE_REPLACED,
    CloseSession,
    FailRequest,
    RegistryInstruction,
    RegistryLimits,
    SessionState,
    TokenBucket,
    Verdict,
    WorkerRegistry,
)
from neurons.miner.authorized import AuthorizedKeys, parse_keys_text, token_hash
from tests.support.worker import inventory

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
WALL = 1_700_000_000.0
LIMITS = RegistryLimits(
    max_workers=2,
    messages_per_second=10.0,
    message_burst=5,
    heartbeat_timeout_s=30.0,
    stale_after_s=20.0,
    max_strikes=3,
    strikes_per_second=0.1,
)


def registry() -> WorkerRegistry[str]:
    return WorkerRegistry(LIMITS)


def join(
    reg: WorkerRegistry[str], sid: str, key: bytes = KEY_A, now: float = 0.0
) -> list[RegistryInstruction]:
    return reg.register(
        sid, key, agent_version="1.0", inventory=inventory("GPU-1"), now=now, wall=WALL + now
    )


def beat(state: str = "idle", seq: int = 0, **kw: object) -> Heartbeat:
    return Heartbeat(seq=seq, state=state, **kw)  # type: ignore[arg-type]


def commit(cid: str) -> ChallengeCommit:
    gpu = GpuCommit(gpu_uuid="GPU-1", roots=b"\x00" * 32, signature=b"\x01" * 64)
    return ChallengeCommit(challenge_id=cid, gpus=[gpu])


# --------------------------------------------------------------------------- lifecycle


def test_joined_then_healthy_busy_leased_from_heartbeats() -> None:
    reg = registry()
    assert join(reg, "s1") == []
    session = reg.get("s1")
    assert session is not None and session.state is SessionState.JOINED
    assert reg.summaries(1.0) == []  # no heartbeat yet: state unknown, not listed
    for wire, state in [("idle", "healthy"), ("busy", "busy"), ("leased", "leased")]:
        reg.heartbeat("s1", beat(wire), now=2.0, wall=WALL + 2)
        assert session.state == state
    (summary,) = reg.summaries(3.0)
    assert summary.state == "leased"
    assert summary.worker_pubkey == KEY_A.hex()
    assert summary.last_heartbeat == WALL + 2
    assert [gpu.uuid for gpu in summary.gpus] == ["GPU-1"]
    assert summary.backends == ["numpy"]


def test_a_heartbeat_with_inventory_replaces_it() -> None:
    reg = registry()
    join(reg, "s1")
    fresh = inventory("GPU-1", "GPU-2")
    reg.heartbeat("s1", beat(inventory=fresh), now=1.0, wall=WALL)
    (summary,) = reg.summaries(1.0)
    assert [gpu.uuid for gpu in summary.gpus] == ["GPU-1", "GPU-2"]
    reg.heartbeat("s1", beat(seq=1), now=2.0, wall=WALL)  # no inventory: the last one stays
    assert len(reg.summaries(2.0)[0].gpus) == 2
    assert isinstance(fresh.gpus[0], GpuInfo)


def test_silence_makes_a_session_lost_closes_it_and_fails_its_requests() -> None:
    reg = registry()
    join(reg, "s1")
    reg.heartbeat("s1", beat(), now=1.0, wall=WALL)
    reg.begin(KEY_A, ("challenge", "c1"), "waiter")
    assert reg.sweep(30.9) == []
    assert reg.summaries(31.0) == []  # overdue: no longer listed even before the sweep
    out = reg.sweep(31.0)
    assert isinstance(out[0], FailRequest)
    assert out[0] == FailRequest("waiter", out[0].error)
    assert isinstance(out[0].error, LinkError)
    assert out[1] == CloseSession("s1", CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")
    assert "s1" not in reg and reg.connected() == 0
    assert reg.session_of(KEY_A) is None


def test_a_disconnect_fails_pending_requests_and_is_idempotent() -> None:
    reg = registry()
    join(reg, "s1")
    reg.begin(KEY_A, ("reveal", "c1"), "w1")
    reg.begin(KEY_A, ("lease", "L"), "w2")
    failed = reg.disconnected("s1")
    assert {f.token for f in failed if isinstance(f, FailRequest)} == {"w1", "w2"}
    assert reg.disconnected("s1") == []


# --------------------------------------------------------------------------- registration


def test_a_live_duplicate_is_refused_and_a_stale_one_replaced() -> None:
    reg = registry()
    join(reg, "s1", now=0.0)
    reg.begin(KEY_A, ("challenge", "c1"), "waiter")
    with pytest.raises(Forbidden, match="live connection"):
        join(reg, "s2", now=19.9)
    out = join(reg, "s3", now=20.0)
    assert isinstance(out[0], FailRequest) and out[0].token == "waiter"
    assert out[1] == CloseSession("s1", CLOSE_REPLACED, "replaced by a new connection")
    session = reg.session_of(KEY_A)
    assert session is not None and session.session_id == "s3"
    assert reg.connected() == 1


def test_max_workers_is_enforced_and_frees_up() -> None:
    reg = registry()
    join(reg, "s1", KEY_A)
    join(reg, "s2", KEY_B)
    with pytest.raises(Forbidden, match="at most 2"):
        join(reg, "s3", bytes(32))
    reg.disconnected("s1")
    join(reg, "s3", bytes(32))
    assert reg.connected() == 2


def test_session_ids_are_unique() -> None:
    reg = registry()
    join(reg, "s1", KEY_A)
    with pytest.raises(ValueError, match="in use"):
        join(reg, "s1", KEY_B)


# --------------------------------------------------------------------------- rate limits


def test_token_bucket_refills_at_its_rate_up_to_its_capacity() -> None:
    bucket = TokenBucket.full(rate=2.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(50.0)  # a clock going backwards refills nothing


def test_a_flood_is_refused_then_closed_and_a_calm_peer_is_forgiven() -> None:
    reg = registry()
    join(reg, "s1")
    verdicts = [reg.admit("s1", 0.0) for _ in range(10)]
    assert verdicts[:5] == [Verdict.ACCEPT] * 5
    assert verdicts[5:8] == [Verdict.REFUSE] * 3  # three strikes allowed
    assert verdicts[8] is Verdict.CLOSE
    assert reg.admit("unknown", 0.0) is Verdict.CLOSE

    join(reg, "s2", KEY_B)
    for second in range(100):  # 5 messages a second, under the rate of 10
        assert all(reg.admit("s2", float(second) + i / 5) is Verdict.ACCEPT for i in range(5))


def test_malformed_messages_cost_strikes() -> None:
    reg = registry()
    join(reg, "s1")
    assert [reg.strike("s1", 0.0) for _ in range(4)] == [Verdict.REFUSE] * 3 + [Verdict.CLOSE]
    assert reg.strike("s1", 10.0) is Verdict.REFUSE  # one strike forgiven per 10 s


# --------------------------------------------------------------------------- requests


def test_replies_resolve_their_pending_request_only() -> None:
    reg = registry()
    join(reg, "s1")
    assert reg.begin(KEY_A, ("challenge", "c1"), "wc") == "s1"
    reg.begin(KEY_A, ("reveal", "c0"), "wr")
    reg.begin(KEY_A, ("lease", "L"), "wl")
    assert reg.reply("s1", commit("other")) is None
    resolved = reg.reply("s1", commit("c1"))
    assert resolved is not None and resolved.token == "wc"
    assert reg.reply("s1", commit("c1")) is None  # a duplicate finds nobody
    assert reg.reply("s1", Reveal(challenge_id="c0", openings=[])).token == "wr"  # type: ignore[union-attr]
    assert reg.reply("s1", LeaseAck(lease_id="L", accepted=True)).token == "wl"  # type: ignore[union-attr]
    assert reg.reply("s2", commit("c1")) is None


def test_error_replies_route_by_in_reply_to() -> None:
    reg = registry()
    join(reg, "s1")
    reg.begin(KEY_A, ("reveal", "c9"), "wr")
    assert reg.reply("s1", ErrorReply(code="malformed", message="x")) is None
    resolved = reg.reply("s1", ErrorReply(code="worker_failure", message="x", in_reply_to="c9"))
    assert resolved is not None and resolved.key == ("reveal", "c9")


def test_job_replies_route_by_request_id_so_one_job_can_have_several_in_flight() -> None:
    reg = registry()
    join(reg, "s1")
    reg.heartbeat("s1", beat("leased"), now=1.0, wall=WALL)  # leased workers take job requests
    reg.begin(KEY_A, ("job", "r-status"), "ws")
    reg.begin(KEY_A, ("job", "r-logs"), "wl")
    reg.begin(KEY_A, ("job", "r-cancel"), "wc")
    status = JobStatus(
        request_id="r-status", lease_id="L", job=JobInfo(job_id="j", state="running")
    )
    resolved = reg.reply("s1", status)
    assert resolved is not None and (resolved.key, resolved.token) == (("job", "r-status"), "ws")
    assert reg.reply("s1", status) is None  # answered once
    refused = JobRefused(request_id="r-cancel", lease_id="L", job_id="j", reason="unknown_job")
    assert reg.reply("s1", refused).token == "wc"  # type: ignore[union-attr]
    error = ErrorReply(code="worker_failure", message="disk", in_reply_to="r-logs")
    assert reg.reply("s1", error).key == ("job", "r-logs")  # type: ignore[union-attr]
    stranger = JobRefused(request_id="r-never", lease_id="L", job_id="j", reason="unknown_job")
    assert reg.reply("s1", stranger) is None


def test_challenges_are_refused_when_busy_leased_in_flight_or_gone() -> None:
    reg = registry()
    with pytest.raises(PeerUnavailable, match="not connected"):
        reg.begin(KEY_A, ("challenge", "c1"), "w")
    join(reg, "s1")
    reg.begin(KEY_A, ("challenge", "c1"), "w")
    with pytest.raises(PeerUnavailable) as info:
        reg.begin(KEY_A, ("challenge", "c2"), "w")  # one in flight per worker
    assert not info.value.leased
    reg.cancel("s1", ("challenge", "c1"))

    reg.heartbeat("s1", beat("busy"), now=1.0, wall=WALL)
    with pytest.raises(PeerUnavailable) as info:
        reg.begin(KEY_A, ("challenge", "c3"), "w")
    assert not info.value.leased
    reg.begin(KEY_A, ("reveal", "c0"), "w")  # reveals and leases are not held back
    reg.heartbeat("s1", beat("leased", 1), now=2.0, wall=WALL)
    with pytest.raises(PeerUnavailable) as info:
        reg.begin(KEY_A, ("challenge", "c4"), "w")
    assert info.value.leased
    with pytest.raises(PeerUnavailable, match="already in flight"):
        reg.begin(KEY_A, ("reveal", "c0"), "w")


def test_replies_update_the_state() -> None:
    reg = registry()
    join(reg, "s1")
    session = reg.get("s1")
    assert session is not None
    reg.begin(KEY_A, ("challenge", "c1"), "w")
    reg.heartbeat("s1", beat("busy"), now=1.0, wall=WALL)
    reg.reply("s1", commit("c1"))
    assert session.state is SessionState.HEALTHY  # committed: idle again before the next beat
    reg.begin(KEY_A, ("challenge", "c2"), "w")
    reg.reply("s1", Unavailable(challenge_id="c2", leased=True))
    # mypy keeps the narrowing of the assert above across reg.reply(), which changes the state
    assert session.state is SessionState.LEASED  # type: ignore[comparison-overlap]
    reg.lease_changed("s1", leased=False)
    assert session.state is SessionState.HEALTHY


def test_close_all_fails_everything_going_away() -> None:
    reg = registry()
    join(reg, "s1")
    reg.begin(KEY_A, ("challenge", "c1"), "w")
    out = reg.close_all()
    assert [type(i) for i in out] == [FailRequest, CloseSession]
    assert out[1].code == CLOSE_GOING_AWAY  # type: ignore[union-attr]
    assert reg.connected() == 0


# --------------------------------------------------------------------------- authorized keys


def test_keys_file_syntax_like_ssh(tmp_path: Path) -> None:
    text = f"# comment\n\n{KEY_A.hex()} gpu-host-1 rack 4\n  {KEY_B.hex().upper()}\n"
    assert parse_keys_text(text) == {KEY_A, KEY_B}
    with pytest.raises(ConfigError, match="line 2"):
        parse_keys_text(f"{KEY_A.hex()}\nnot-a-key\n")
    bad = tmp_path / "keys"
    bad.write_text("zz\n")
    with pytest.raises(ConfigError, match="keys"):
        AuthorizedKeys(bad)


def test_add_appends_atomically_and_is_seen_by_other_instances(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "authorized_workers"
    keys = AuthorizedKeys(path, keys=[KEY_B.hex()])
    assert KEY_B in keys and KEY_A not in keys
    assert keys.add(KEY_A, comment="host\nwith newline")
    assert not keys.add(KEY_A)
    assert path.read_text() == f"{KEY_A.hex()} host with newline\n"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    other = AuthorizedKeys(path)
    assert KEY_A in other
    key_c = bytes(range(2, 34))
    other.add(key_c.hex())
    assert key_c in keys  # picked up from disk by the first instance
    assert sorted(path.read_text().splitlines()) == sorted(
        [f"{KEY_A.hex()} host with newline", key_c.hex()]
    )


def test_join_tokens_are_single_use_and_stored_hashed(tmp_path: Path) -> None:
    path = tmp_path / "authorized_workers"
    keys = AuthorizedKeys(path, join_tokens=["tok-1", "tok-2"])
    with pytest.raises(Forbidden, match="not authorized"):
        keys.admit(KEY_A)
    with pytest.raises(Forbidden, match="unknown join token"):
        keys.admit(KEY_A, "tok-3")
    assert keys.admit(KEY_A, "tok-1", now=0.0) == "token"
    assert KEY_A in keys and keys.unspent_tokens() == 1
    assert keys.admit(KEY_A, "tok-2") == "key"  # already pinned: the token is not spent
    assert keys.unspent_tokens() == 1
    with pytest.raises(Forbidden, match="already used"):
        keys.admit(KEY_B, "tok-1")
    used = (tmp_path / "authorized_workers.used-tokens").read_text()
    assert used == token_hash("tok-1") + "\n" and "tok-1" not in used
    assert "pinned by join token 1970-01-01T00:00:00Z" in path.read_text()
    # a restart remembers the burned token
    with pytest.raises(Forbidden, match="already used"):
        AuthorizedKeys(path, join_tokens=["tok-1"]).admit(KEY_B, "tok-1")


def test_a_broken_keys_file_at_runtime_keeps_the_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "authorized_workers"
    path.write_text(KEY_A.hex() + "\n")
    keys = AuthorizedKeys(path)
    path.write_text("garbage that is longer than before\n")
    assert KEY_A in keys
