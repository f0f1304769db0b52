"""The relay role (capability ``relay=true``): slots, RELAY_CONNECT and stream forwarding.

* RELAY_REGISTER (450) -> RELAY_REGISTERED (451): a slot bound to the caller's node key and to
  the session it registered on (its owner's way in); renew by registering with the slot id.
* RELAY_CONNECT (452) -> empty ack when the slot is live and its owner online.
* RELAY_STREAM (453) from a requester: ``stream_id`` is the requester's own number; the first
  segment of a new id opens a stream to the slot owner under a relay-assigned id (unique per
  slot). Segments are forwarded as RELAY_STREAM requests on the other side's session and
  acknowledged only after the far end acknowledged them (end-to-end backpressure). An empty
  segment closes the stream both ways. Every refusal is an error response whose text says why.
* Checks per segment: the kind label matches the frames it carries (``FrameTracker``), content
  only where the policy allows it for both ends, per-peer caps (segment size, concurrent
  streams, bytes per day per kind, trust-gated, see ``quotas.py``). Counters are persisted in
  the store's blob area (``relay.quota``) every few seconds and on close.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import RelayRefused, RelayStreamError, RemoteError, Scp2pError
from ..wire.messages import ACK, MsgType, RelayConnect, RelayRegister, RelayRegistered, RelayStream
from ..wire.records import RelayKind
from .frames import FrameTracker
from .messages import stream_payload
from .quotas import QuotaBook, RelayPolicy
from .slots import SlotTable

log = logging.getLogger(__name__)

BLOB_NAME = "relay.quota"


@dataclass(eq=False)
class _Stream:
    slot_id: int
    req_session: Any
    req_sid: int
    req_pk: bytes
    owner_pk: bytes
    owner_session: Any
    owner_sid: int
    up: FrameTracker = field(default_factory=FrameTracker)  # requester -> owner
    down: FrameTracker = field(default_factory=FrameTracker)  # owner -> requester
    closed: bool = False
    bytes: int = 0


class RelayServer:
    def __init__(
        self,
        *,
        policy: Optional[RelayPolicy] = None,
        store: Any = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
        persist_interval: float = 5.0,
    ) -> None:
        self.policy = policy if policy is not None else RelayPolicy()
        self.store = store
        self.clock = clock
        self.timeout = timeout
        self.persist_interval = persist_interval
        self.slots = SlotTable(lifetime=self.policy.slot_lifetime, max_slots=self.policy.max_slots)
        self.quotas = QuotaBook(self.policy)
        self._by_req: dict[tuple, _Stream] = {}
        self._by_owner: dict[tuple, _Stream] = {}
        self._next_sid: dict[int, int] = {}
        self._per_peer: dict[bytes, int] = {}
        self._watched: set = set()
        self._tasks: set[asyncio.Task] = set()
        self._timer: Optional[asyncio.Task] = None
        self.forwarded_bytes = 0
        self.segments = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.store is not None:
            blob = await self.store.run(lambda s: s.blob(BLOB_NAME))
            if blob is not None:
                self.quotas.load_json(blob.data, self.clock())
        self._timer = asyncio.create_task(self._housekeeping(), name="relay-housekeeping")

    async def close(self) -> None:
        tasks = list(self._tasks) + ([self._timer] if self._timer else [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.persist()

    async def persist(self) -> None:
        if self.store is None or not self.quotas.dirty:
            return
        data = self.quotas.to_json()
        self.quotas.dirty = False
        try:
            await self.store.run(lambda s: s.put_blob(BLOB_NAME, data))
        except Scp2pError as exc:
            self.quotas.dirty = True
            log.warning("could not persist relay counters: %s", exc)

    async def _housekeeping(self) -> None:
        while True:
            now = self.clock()
            for slot in self.slots.expire(now):
                log.info("relay slot %d expired", slot.slot_id)
                self._close_slot_streams(slot.slot_id, "slot expired")
            await self.persist()
            nxt = self.slots.next_deadline()
            delay = self.persist_interval if nxt is None else min(self.persist_interval, max(0.0, nxt - now))
            await asyncio.sleep(delay)

    def register(self, dispatcher: Any) -> None:
        dispatcher.register(MsgType.RELAY_REGISTER, self.on_register)
        dispatcher.register(MsgType.RELAY_CONNECT, self.on_connect)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ handlers
    async def on_register(self, ctx: Any, msg: RelayRegister) -> RelayRegistered:
        try:
            slot = self.slots.register(ctx.remote_pubkey, msg.relay_slot_id, self.clock(), ctx.session)
        except RelayRefused as exc:
            raise RemoteError(exc.reason) from None
        sess = ctx.session
        if sess not in self._watched:
            self._watched.add(sess)
            sess.closed.add_done_callback(lambda _f, s=sess: self._session_gone(s))
        log.debug("relay slot %d registered by %s", slot.slot_id, ctx.remote_pubkey.hex()[:16])
        return RelayRegistered(slot.slot_id, int(slot.expires_at))

    async def on_connect(self, ctx: Any, msg: RelayConnect):
        slot = self._live_slot(msg.relay_slot_id)
        if slot.owner == ctx.remote_pubkey:
            raise RemoteError("cannot connect to your own relay slot")
        return ACK

    def _live_slot(self, slot_id: int):
        try:
            slot = self.slots.get(slot_id, self.clock())
        except RelayRefused as exc:
            raise RemoteError(exc.reason) from None
        if slot.session is None or not slot.session.is_open:
            raise RemoteError(f"relay slot {slot_id}: its owner is offline")
        return slot

    async def on_stream(self, ctx: Any, msg: RelayStream) -> RelayStream:
        """A segment that is not for one of our own tunnels: relay it."""
        sess = ctx.session
        slot_id = msg.relay_slot_id
        ack = RelayStream(slot_id, msg.stream_id, msg.kind, b"")
        owner_slot = None
        if slot_id in self.slots:
            s = self.slots._slots[slot_id]
            if s.session is sess:
                owner_slot = s
        if owner_slot is not None:  # owner -> requester
            st = self._by_owner.get((slot_id, msg.stream_id))
            if st is None or st.closed:
                if not msg.payload:
                    return ack
                raise RemoteError(f"no relayed stream {msg.stream_id} on slot {slot_id}")
            target, target_sid, tracker = st.req_session, st.req_sid, st.down
        else:  # requester -> owner
            st = self._by_req.get((sess, msg.stream_id))
            if st is not None and st.slot_id != slot_id:
                raise RemoteError("stream id already used for another slot")
            if st is None or st.closed:
                if not msg.payload:
                    return ack
                st = self._open(sess, ctx.remote_pubkey, slot_id, msg.stream_id)
            target, target_sid, tracker = st.owner_session, st.owner_sid, st.up
        if not msg.payload:
            self._close(st, "closed by one end", notify_sender=False, sender=sess)
            return ack
        now = self.clock()
        try:
            n = tracker.check(msg.payload, msg.kind)
            for pk in (st.req_pk, st.owner_pk):
                self.quotas.check_segment(pk, msg.kind, n, now)
        except (RelayRefused, RelayStreamError) as exc:
            self._close(st, str(exc), notify_sender=False, sender=sess)
            raise RemoteError(str(exc)) from None
        for pk in (st.req_pk, st.owner_pk):
            self.quotas.charge(pk, msg.kind, n, now)
        st.bytes += n
        self.segments += 1
        self.forwarded_bytes += n
        payload = self.transform(st, sess is st.req_session, msg.kind, msg.payload)
        try:
            env = await target.request_raw(
                MsgType.RELAY_STREAM, stream_payload(slot_id, target_sid, msg.kind, payload), timeout=self.timeout
            )
        except (Scp2pError, OSError) as exc:
            self._close(st, f"far end unreachable: {exc}", notify_sender=False, sender=sess)
            raise RemoteError(f"relayed peer unreachable: {exc}") from None
        if env.is_error:
            reason = bytes(env.payload).decode("utf-8", "replace")
            self._close(st, reason, notify_sender=False, sender=sess)
            raise RemoteError(f"relayed peer refused the segment: {reason}")
        return ack

    def transform(self, st: _Stream, upstream: bool, kind: RelayKind, payload: bytes) -> bytes:
        """The bytes forwarded (identity; a hook for tests that model a lying relay)."""
        return payload

    # ------------------------------------------------------------------ streams
    def _open(self, sess: Any, req_pk: bytes, slot_id: int, req_sid: int) -> _Stream:
        slot = self._live_slot(slot_id)
        if slot.owner == req_pk:
            raise RemoteError("cannot connect to your own relay slot")
        if len(self._by_req) >= self.policy.max_streams:
            raise RemoteError("relay quota exceeded: too many relayed streams")
        for pk in (req_pk, slot.owner):
            cap = self.policy.limits_for(pk).concurrent_streams
            if self._per_peer.get(pk, 0) >= cap:
                self.quotas.refused += 1
                raise RemoteError(f"relay quota exceeded: {cap} concurrent streams for peer {pk.hex()[:16]}")
        sid = self._next_sid.get(slot_id, 1)
        self._next_sid[slot_id] = sid % 0xFFFFFFFF + 1
        st = _Stream(slot_id, sess, req_sid, bytes(req_pk), slot.owner, slot.session, sid)
        self._by_req[(sess, req_sid)] = st
        self._by_owner[(slot_id, sid)] = st
        for pk in (st.req_pk, st.owner_pk):
            self._per_peer[pk] = self._per_peer.get(pk, 0) + 1
        if sess not in self._watched:
            self._watched.add(sess)
            sess.closed.add_done_callback(lambda _f, s=sess: self._session_gone(s))
        return st

    def _close(self, st: _Stream, reason: str, *, notify_sender: bool, sender: Any = None) -> None:
        if st.closed:
            return
        st.closed = True
        self._by_req.pop((st.req_session, st.req_sid), None)
        self._by_owner.pop((st.slot_id, st.owner_sid), None)
        for pk in (st.req_pk, st.owner_pk):
            left = self._per_peer.get(pk, 0) - 1
            if left > 0:
                self._per_peer[pk] = left
            else:
                self._per_peer.pop(pk, None)
        log.debug("relayed stream %d/%d closed: %s", st.slot_id, st.owner_sid, reason)
        ends = [(st.req_session, st.req_sid), (st.owner_session, st.owner_sid)]
        for sess, sid in ends:
            if (sess is sender and not notify_sender) or not getattr(sess, "is_open", False):
                continue
            self._spawn(self._send_close(sess, st.slot_id, sid))

    async def _send_close(self, sess: Any, slot_id: int, sid: int) -> None:
        try:
            await sess.request_raw(MsgType.RELAY_STREAM, stream_payload(slot_id, sid, RelayKind.CONTROL, b""),
                                   timeout=self.timeout)  # fmt: skip
        except (Scp2pError, OSError):
            pass

    def _close_slot_streams(self, slot_id: int, reason: str) -> None:
        for st in [s for s in self._by_req.values() if s.slot_id == slot_id]:
            self._close(st, reason, notify_sender=True)

    def _session_gone(self, sess: Any) -> None:
        self._watched.discard(sess)
        for slot in self.slots.detach(sess):
            self._close_slot_streams(slot.slot_id, "slot owner went offline")
        for st in [s for s in self._by_req.values() if s.req_session is sess or s.owner_session is sess]:
            self._close(st, "session closed", notify_sender=False, sender=sess)

    def stats(self) -> dict:
        return {"slots": len(self.slots), "streams": len(self._by_req), "segments": self.segments,
                "forwarded_bytes": self.forwarded_bytes, "refused": self.quotas.refused}  # fmt: skip


__all__ = ["BLOB_NAME", "RelayServer"]
