"""One reliable stream (protocol 1) of the Pilot wire protocol, sans-I/O, aioquic style.

Packets and time in, packets and events out: ``receive_packet(pkt, now)``, ``handle_timer(now)``,
``send``/``close``/``abort``, then ``packets_to_send(now)``, ``get_timer()`` and ``next_event()``.

What the official 1.18 daemon sends and accepts, and what this module does about it. Sources:
capture = ``tests/vectors/official_1_18_capture.json``; live = two official 1.18 daemons measured
in a private netns (``pilotctl bench`` + ``info`` conn_list); src = pilot-protocol/pilotprotocol
``pkg/daemon/{ports.go,zz_*_test.go}`` (1.18 era), jf = jerryfane/pilotprotocol
``pkg/daemon/stream_*.go`` (v1.9 fork, older rules).

* Handshake (capture, src): SYN ``flags=SYN seq=ISS ack=0 window=free slots``; SYN-ACK
  ``SYN|ACK seq=ISS' ack=ISS+1``; ACK ``ACK seq=ISS+1 ack=ISS'+1``. The official ISS is 0 on both
  sides (first SYN of the capture has seq 0), so ``iss`` defaults to 0. A repeated SYN for a live
  connection gets the original SYN-ACK again. Dial: SYN resent after 1 s, doubling to 8 s, 6 resends.
  A passive stream is "accepted" when the final ACK (or any ACK-flagged packet acking the SYN) comes.
* Sequence numbers count bytes, 32-bit, serial arithmetic; the FIN takes one number, SACK/ACKs none.
  Internally offsets are unbounded ints from ISS+1, so wraparound only exists on the wire.
* Segments (live, src): data goes in ``ACK`` packets of at most 1024 bytes (``SendSegmentSize``;
  measured bytes_sent/segs_sent = 1024.0); a 1.18 peer accepts up to 4096 (``MaxSegmentSize``),
  we accept any length. Retransmissions keep the original boundaries: the official receiver
  only reassembles segments whose seq equals its next expected seq exactly.
* Window field (src ``RecvWindow``, ``TestWindowAvailableCountsSegmentsAgainstPeerSlots``): free
  receive-buffer *slots*, one per segment whatever its size (official buffer 512 slots, so 512 is
  advertised when idle). A sender keeps at most that many segments outstanding (SACKed ones count)
  and never more than 128 (``MaxSegmentsOutstanding``; live: unacked peaks at 128). No window
  scaling. Before the first advertisement the window is unknown (no limit); 0 is a real zero
  window: the sender probes with a pure ACK after 500 ms, doubling to 30 s.
* ACKs (src, jf): pure ACK ``seq=snd_nxt ack=rcv_nxt window``; delayed by up to 40 ms or 2
  segments; out-of-order data is answered at once. SACK (``sack`` module) rides in the payload of
  an ACK. The official sender counts a duplicate ACK only when the payload is empty (and only
  marks segments with SACK), the official receiver sends SACK on every out-of-order ACK. So our
  receiver sends each of the first three duplicate ACKs of a hole twice, plain (for an official
  sender's fast retransmit) and with SACK blocks (for a sender like ours), later ones with SACK
  only. Data packets piggyback the ACK.
* FIN (capture, src ``TestEarlyFINIsHeldUntilTheDataBeforeItArrives``): ``flags=FIN seq=snd_nxt
  ack=0 window=0``, sent once all data is acknowledged (or after a linger); a FIN is accepted only
  in order; the answer is ``FIN|ACK ack=FIN+1``, then TIME_WAIT (10 s). No half-close: a peer's FIN
  ends both directions (1.18 moves to TIME_WAIT and stops sending), and data arriving after we
  closed is dropped unacknowledged. A FIN in TIME_WAIT is answered with a plain ACK.
* RST (jf ``sendRST``): ``flags=RST`` with seq/ack/window 0; accepted in any state without a
  sequence check. Sent after 8 transmissions of one segment, after 3 unanswered keepalives.
* Loss detection is the sender's own business (nothing on the wire changes): the SACK
  scoreboard, RACK (``rack``, RFC 8985: lost when a later-sent segment arrived and a reordering
  window passed; finds lost retransmissions), three plain duplicate ACKs (RFC 5681, while no
  reordering was seen), and probes (PTO, RFC 8985 §7 / RFC 9002 §6.2): one segment past cwnd
  (a queued resend, new data, or the newest outstanding segment) max(2·SRTT, SRTT+4·RTTVAR)
  capped at 8 least RTTs (>= 10 ms, +40 ms for a lone segment with nothing new to send) after
  the last ACK, doubling, at most four. The RTO per RFC 6298 (``rtt``: Karn, backoff, 200 ms
  floor) and its collapse of cwnd to one segment only come when probes stay unanswered;
  congestion control in ``congestion``.
* Keepalive (jf ``idleSweepLoop``): after 60 s without traffic a pure ACK probe, repeated every
  15 s; the third unanswered one is followed by RST. 120 s idle closes with FIN.
"""

from __future__ import annotations

import enum
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from operator import attrgetter

from . import sack
from .addr import SocketAddr
from .congestion import Congestion
from .errors import LocalProtocolError
from .packet import Flag, Packet, Proto
from .rack import Rack
from .rtt import RttEstimator

_SYN, _ACK, _FIN, _RST = int(Flag.SYN), int(Flag.ACK), int(Flag.FIN), int(Flag.RST)
_SYNACK, _FINACK = _SYN | _ACK, _FIN | _ACK
_STREAM = int(Proto.STREAM)

SEGMENT_SIZE = 1024
MAX_SEGMENT_SIZE = 4096
RECV_SLOTS = 512
MAX_OUTSTANDING = 128
MAX_OOO_SEGMENTS = 4096
DUP_THRESH = 3
DELAYED_ACK_TIMEOUT = 0.040
DELAYED_ACK_SEGMENTS = 2
MIN_PTO = 0.010
MAX_PROBES = 4
PTO_MIN_RTTS = 8
NAGLE_TIMEOUT = 0.040
SYN_RTO = 1.0
SYN_RTO_MAX = 8.0
SYN_RETRIES = 6
MAX_RETX_ATTEMPTS = 8
ZERO_WINDOW_PROBE = 0.5
ZERO_WINDOW_PROBE_MAX = 30.0
TIME_WAIT = 10.0
KEEPALIVE_INTERVAL = 60.0
KEEPALIVE_PROBE_INTERVAL = 15.0
KEEPALIVE_PROBES = 3
IDLE_TIMEOUT = 120.0
FIN_LINGER = 3.0
SEND_BUFFER_SIZE = 1 << 20

_M = 0xFFFFFFFF
_START = attrgetter("start")


def _s32(x: int) -> int:
    x &= _M
    return x - 0x100000000 if x & 0x80000000 else x


class StreamError(LocalProtocolError):
    """The stream cannot do what was asked in its current state (e.g. send after close)."""


class StreamState(enum.Enum):
    CLOSED = "CLOSED"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"
    TIME_WAIT = "TIME_WAIT"


# --- events ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StreamEvent:
    """Base of what ``Stream.next_event`` returns; ``conn_id`` names the stream in a table."""

    conn_id: int = field(default=0, kw_only=True)


@dataclass(frozen=True, slots=True)
class Connected(StreamEvent):
    """The handshake completed (either side)."""


@dataclass(frozen=True, slots=True)
class DataReceived(StreamEvent):
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded(StreamEvent):
    """The peer sent FIN after all its data: no more data will come (and ours is no longer read)."""


@dataclass(frozen=True, slots=True)
class StreamReset(StreamEvent):
    """The peer sent RST."""


@dataclass(frozen=True, slots=True)
class IdleTimedOut(StreamEvent):
    """No traffic for ``idle_timeout``: the stream is being closed (FIN after queued data). Informational."""


@dataclass(frozen=True, slots=True)
class Closed(StreamEvent):
    """The stream is finished; ``reason`` says why. Always the last event of a stream."""

    reason: str


# --- the state machine -------------------------------------------------------------------------

class _Seg:
    __slots__ = ("start", "end", "data", "sent_at", "tx", "sacked", "lost")

    def __init__(self, start: int, data: bytes, now: float) -> None:
        self.start = start
        self.end = start + len(data)
        self.data = data
        self.sent_at = now
        self.tx = 1
        self.sacked = False
        self.lost = False


class Stream:
    """One connection between ``local`` and ``remote``. Times are seconds on the caller's clock."""

    # Fixed attributes: a stream is one block of memory instead of a dict that grows to ~80 keys (less to
    # allocate and touch per SYN, ~10 us on a cold CPU, and smaller per connection).
    __slots__ = (
        "local", "remote", "conn_id", "initiator", "state", "iss", "irs", "mss", "created_at", "recv_slots",
        "auto_consume", "nodelay", "send_buffer_size", "max_outstanding", "_syn_rto", "_time_wait", "_fin_linger",
        "_keepalive", "_idle_timeout", "_quiet_check", "rtt", "cc", "_sbuf", "_sbuf_base", "snd_una", "snd_nxt",
        "_q", "_qh", "_flight", "_short_inflight", "_lostq", "_retx_live", "rack", "_pto_count", "_tlp_new",
        "_high_sacked", "_sack_walked", "_dupacks", "peer_window", "_closing", "_fin_sent", "_fin_acked", "_fin_tx",
        "rcv_nxt", "_ooo", "_peer_fin", "_unconsumed", "_ack_now", "_ack_pending", "_hole_dups", "_hole_at",
        "_last_adv", "_syn_deadline", "_syn_tries", "_syn_sent_at", "_rto_deadline", "_pto_deadline",
        "_reo_deadline", "_ack_deadline", "_nagle_deadline", "_probe_deadline", "_probe_interval",
        "_linger_deadline", "_end_deadline", "_last_activity", "_ka_next", "_ka_probes", "_out", "_events", "_rx",
        "closed_reason", "established", "_wake", "_nagle_expired", "_linger_expired", "_force_retx", "stats")

    def __init__(self, local: SocketAddr, remote: SocketAddr, now: float, *, initiator: bool,
                 iss: int | None = None, mss: int = SEGMENT_SIZE, conn_id: int = 0,
                 recv_slots: int = RECV_SLOTS, auto_consume: bool = True, nodelay: bool = False,
                 send_buffer_size: int = SEND_BUFFER_SIZE, max_outstanding: int = MAX_OUTSTANDING,
                 syn_rto: float = SYN_RTO, time_wait: float = TIME_WAIT, fin_linger: float = FIN_LINGER,
                 keepalive: float = KEEPALIVE_INTERVAL, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if not 1 <= mss <= MAX_SEGMENT_SIZE:
            raise StreamError(f"mss {mss} out of range: use 1..{MAX_SEGMENT_SIZE} (official peers accept 4096)")
        self.local = local
        self.remote = remote
        self.conn_id = conn_id
        self.initiator = initiator
        self.state = StreamState.CLOSED
        self.iss = 0 if iss is None else iss & _M
        self.irs = 0
        self.mss = mss
        self.created_at = now
        self.recv_slots = recv_slots
        self.auto_consume = auto_consume
        self.nodelay = nodelay
        self.send_buffer_size = send_buffer_size
        self.max_outstanding = max_outstanding
        self._syn_rto = syn_rto
        self._time_wait = time_wait
        self._fin_linger = fin_linger
        self._keepalive = keepalive
        self._idle_timeout = idle_timeout
        self._quiet_check = min(keepalive, idle_timeout)   # after this much silence: probe, or close if idle
        self.rtt = RttEstimator()
        self.cc = Congestion(mss)
        # send side: offsets count data bytes from ISS+1
        self._sbuf = bytearray()
        self._sbuf_base = 0          # offset of _sbuf[0]
        self.snd_una = 0
        self.snd_nxt = 0             # end of data sent so far
        self._q: list[_Seg] = []     # outstanding segments in order, live from index _qh
        self._qh = 0
        self._flight = 0             # bytes outstanding, neither SACKed nor marked lost
        self._short_inflight = 0     # unSACKed outstanding segments shorter than mss (Nagle)
        self._lostq: deque[_Seg] = deque()
        self._retx_live = 0          # outstanding segments sent more than once
        self.rack = Rack()
        self._pto_count = 0          # probes sent since the last ACK that delivered something
        self._tlp_new = False        # the probe is new data: one segment past cwnd
        self._high_sacked = 0
        self._sack_walked: dict[int, int] = {}
        self._dupacks = 0            # duplicate ACKs without SACK blocks since snd_una last moved
        self.peer_window = -1        # free slots the peer advertised; -1 before the first one
        self._closing = False
        self._fin_sent = False
        self._fin_acked = False
        self._fin_tx = 0
        # receive side
        self.rcv_nxt = 0
        self._ooo: dict[int, bytes] = {}
        self._peer_fin: int | None = None
        self._unconsumed = 0
        self._ack_now = False
        self._ack_pending = 0
        self._hole_dups = 0
        self._hole_at = -1
        self._last_adv = recv_slots
        # timers
        self._syn_deadline: float | None = None
        self._syn_tries = 0
        self._syn_sent_at = now
        self._rto_deadline: float | None = None
        self._pto_deadline: float | None = None
        self._reo_deadline: float | None = None
        self._ack_deadline: float | None = None
        self._nagle_deadline: float | None = None
        self._probe_deadline: float | None = None
        self._probe_interval = ZERO_WINDOW_PROBE
        self._linger_deadline: float | None = None
        self._end_deadline: float | None = None   # TIME_WAIT end, or FIN_WAIT giving up on the peer's FIN
        self._last_activity = now
        self._ka_next: float | None = None
        self._ka_probes = 0
        self._out: list[Packet] = []
        self._events: deque = deque()
        self._rx: list[bytes] = []
        self.closed_reason: str | None = None
        self.established = False
        self._wake = _noop
        self._nagle_expired = self._linger_expired = self._force_retx = False
        self.stats = dict.fromkeys(("bytes_sent", "bytes_recv", "segs_sent", "segs_recv", "retransmits",
                                    "fast_retx", "sack_recv", "sack_sent", "dup_acks"), 0)

    # --- public API ---------------------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Send the SYN (initiator only)."""
        if not self.initiator or self.state is not StreamState.CLOSED or self.closed_reason:
            raise StreamError(f"connect() needs a fresh initiator stream (state {self.state.value})")
        self.state = StreamState.SYN_SENT
        self._syn_sent_at = now
        self._syn_deadline = now + self._syn_rto
        self._out.append(self._packet(_SYN, self.iss, 0))
        self._wake(self)

    def send(self, data: bytes) -> None:
        """Queue bytes; they leave as the windows allow. Check ``send_buffer_free`` to pace writers."""
        if self._closing or self.state not in (StreamState.SYN_SENT, StreamState.SYN_RECEIVED,
                                               StreamState.ESTABLISHED):
            raise StreamError(f"cannot send on a stream in state {self.state.value}"
                              f"{' after close()' if self._closing else ''}: open a new stream")
        if data:
            self._sbuf += data
            self._wake(self)

    def send_buffer_free(self) -> int:
        """Bytes the caller may still queue before the send buffer counts as full (backpressure)."""
        return max(0, self.send_buffer_size - self.buffered_bytes())

    def buffered_bytes(self) -> int:
        """Bytes queued or in flight, not yet acknowledged."""
        return self._sbuf_base + len(self._sbuf) - self.snd_una

    def data_consumed(self, n: int) -> None:
        """With ``auto_consume=False``: the application took ``n`` delivered bytes; reopen the window."""
        if self.auto_consume or n <= 0:
            return
        self._unconsumed = max(0, self._unconsumed - n)
        win = self._recv_window()
        if (self._last_adv == 0 and win > 0) or win - self._last_adv >= max(1, self.recv_slots // 4):
            self._ack_now = True
            self._wake(self)

    def close(self, now: float) -> None:
        """Finish sending what is queued, then FIN. Data arriving after this is dropped (as 1.18 does)."""
        if self._closing or self.closed_reason:
            return
        if self.state is StreamState.CLOSED:
            self._finish("closed", StreamState.CLOSED)
            self._wake(self)
            return
        self._closing = True
        if self.state is not StreamState.SYN_SENT:   # a dial in progress closes once connected
            self.state = StreamState.FIN_WAIT
            self._linger_deadline = now + self._fin_linger
        self._nagle_deadline = None
        self._wake(self)

    def abort(self, now: float) -> None:
        """Send RST and drop everything."""
        if self.closed_reason and self.state in (StreamState.CLOSED, StreamState.TIME_WAIT):
            return
        if self.state is not StreamState.CLOSED:
            self._out.append(self._packet(_RST, 0, 0, window=0))
        self._finish("aborted", StreamState.CLOSED)
        self._wake(self)

    def next_event(self) -> StreamEvent | None:
        if self._rx:
            self._flush_rx()
        return self._events.popleft() if self._events else None

    def packets_to_send(self, now: float) -> list[Packet]:
        if self.state in (StreamState.ESTABLISHED, StreamState.FIN_WAIT):
            if self._ack_now:
                self._send_ack(now)
            self._fill(now)
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        soonest = None
        for t in (self._syn_deadline, self._rto_deadline, self._pto_deadline, self._reo_deadline, self._ack_deadline,
                  self._nagle_deadline, self._probe_deadline, self._linger_deadline, self._end_deadline, self._ka_next):
            if t is not None and (soonest is None or t < soonest):
                soonest = t
        return soonest

    def handle_timer(self, now: float) -> None:
        if self._end_deadline is not None and now >= self._end_deadline:
            self._end_deadline = None
            if self.state is StreamState.FIN_WAIT:
                self._finish("closed: the peer never sent its FIN", StreamState.CLOSED)
            else:
                self.state = StreamState.CLOSED
        if self._syn_deadline is not None and now >= self._syn_deadline:
            self._on_syn_timeout(now)
        if self._rto_deadline is not None and now >= self._rto_deadline:
            self._on_rto(now)
        if self._reo_deadline is not None and now >= self._reo_deadline:
            self._reo_deadline = None
            self._detect_losses(now)
            if self._pto_deadline is None:
                self._arm_pto(now)
        if self._pto_deadline is not None and now >= self._pto_deadline:
            self._on_pto(now)
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_now = True
        if self._nagle_deadline is not None and now >= self._nagle_deadline:
            self._nagle_deadline = None
            self._nagle_expired = True
        if self._probe_deadline is not None and now >= self._probe_deadline:
            self._probe_deadline = None
            if self.peer_window == 0 and self.state in (StreamState.ESTABLISHED, StreamState.FIN_WAIT):
                self._out.append(self._packet(_ACK, self._snd_wire(self.snd_nxt), self._rcv_wire(self.rcv_nxt)))
                self._probe_interval = min(self._probe_interval * 2, ZERO_WINDOW_PROBE_MAX)
                self._probe_deadline = now + self._probe_interval
        if self._linger_deadline is not None and now >= self._linger_deadline:
            self._linger_deadline = None
            self._linger_expired = True
        if self._ka_next is not None and now >= self._ka_next:
            self._on_keepalive(now)
        self._wake(self)

    def receive_packet(self, pkt: Packet, now: float) -> None:
        """Feed one decoded stream packet addressed to this connection."""
        if pkt.protocol != _STREAM or self.state is StreamState.CLOSED and self.closed_reason:
            return
        flags = pkt.flags
        if flags & _SYN:
            if flags & _ACK:
                self._on_synack(pkt, now)
            else:
                self._on_syn(pkt, now)
        elif flags & _FIN:
            self._touch(now)
            self._on_fin(pkt, now)
        elif flags & _RST:
            self._on_rst()
        elif flags & _ACK:
            self._touch(now)
            self._on_ack(pkt, now)
        self._wake(self)

    @property
    def is_closed(self) -> bool:
        return self.closed_reason is not None

    def info(self) -> dict:
        """This connection as a ``conn_list`` row of the official info JSON (same keys and units)."""
        s = self.stats
        return {
            "bytes_recv": s["bytes_recv"], "bytes_sent": s["bytes_sent"], "cong_win": self.cc.cwnd,
            "dup_acks": s["dup_acks"], "fast_retx": s["fast_retx"], "id": self.conn_id,
            "in_flight": self._flight, "in_recovery": self.cc.in_recovery, "local_port": self.local.port,
            "ooo_buf": len(self._ooo),
            "peer_recv_win": max(self.peer_window, 0) * MAX_SEGMENT_SIZE if self.peer_window >= 0 else -1,
            "recv_win": self._recv_window() * MAX_SEGMENT_SIZE, "remote_addr": str(self.remote.addr),
            "remote_port": self.remote.port, "retransmits": s["retransmits"],
            "rttvar_ms": int(self.rtt.rttvar * 1000), "sack_recv": s["sack_recv"], "sack_sent": s["sack_sent"],
            "segs_recv": s["segs_recv"], "segs_sent": s["segs_sent"],
            "srtt_ms": int((self.rtt.srtt or 0.0) * 1000), "ssthresh": self.cc.ssthresh,
            "state": self.state.value, "unacked": len(self._q) - self._qh,
        }

    # --- helpers ------------------------------------------------------------------------------

    def _packet(self, flags: int, seq: int, ack: int, payload: bytes = b"", window: int | None = None) -> Packet:
        return Packet(_STREAM, self.local.addr, self.remote.addr, self.local.port, self.remote.port, flags,
                      seq, ack, self._advertise() if window is None else window, payload)

    def _snd_wire(self, off: int) -> int:
        return (self.iss + 1 + off) & _M

    def _rcv_wire(self, off: int) -> int:
        return (self.irs + 1 + off) & _M

    def _recv_window(self) -> int:
        if self.auto_consume:
            return min(self.recv_slots, 0xFFFF)
        used = -(-self._unconsumed // self.mss)
        return max(0, min(self.recv_slots - used, 0xFFFF))

    def _advertise(self) -> int:
        self._last_adv = win = self._recv_window()
        return win

    def _touch(self, now: float) -> None:
        self._last_activity = now
        self._ka_probes = 0
        if self.state is StreamState.ESTABLISHED:
            self._ka_next = now + self._quiet_check

    def _emit(self, event: StreamEvent) -> None:
        if self._rx:
            self._flush_rx()
        self._events.append(event)

    def _flush_rx(self) -> None:
        data = self._rx[0] if len(self._rx) == 1 else b"".join(self._rx)
        self._rx = []
        self._events.append(DataReceived(data, conn_id=self.conn_id))

    def _finish(self, reason: str, state: StreamState) -> None:
        self.state = state
        for name in ("_syn_deadline", "_rto_deadline", "_pto_deadline", "_reo_deadline", "_ack_deadline",
                     "_nagle_deadline", "_probe_deadline", "_linger_deadline", "_ka_next"):
            setattr(self, name, None)
        self._end_deadline = None
        self._ack_now = False
        if self.closed_reason is None:
            self.closed_reason = reason
            self._emit(Closed(reason, conn_id=self.conn_id))

    def _established(self, now: float) -> None:
        self.state = StreamState.ESTABLISHED
        self.established = True
        self._syn_deadline = None
        if self._closing:
            self.state = StreamState.FIN_WAIT
            self._linger_deadline = now + self._fin_linger
        if self._syn_tries == 0:
            self.rtt.sample(now - self._syn_sent_at)
        self._touch(now)
        self._emit(Connected(conn_id=self.conn_id))

    # --- handshake ----------------------------------------------------------------------------

    def _on_syn(self, pkt: Packet, now: float) -> None:
        if self.state is StreamState.CLOSED and not self.initiator:
            self.irs = pkt.seq
            self.peer_window = pkt.window
            self.state = StreamState.SYN_RECEIVED
            self._syn_sent_at = now
            self._syn_deadline = now + self._syn_rto
            self._touch(now)
        elif not (self.state in (StreamState.SYN_RECEIVED, StreamState.ESTABLISHED) and pkt.seq == self.irs):
            return
        self._out.append(self._packet(_SYNACK, self.iss, (self.irs + 1) & _M))

    def _on_synack(self, pkt: Packet, now: float) -> None:
        if pkt.ack != (self.iss + 1) & _M:
            return
        if self.state is StreamState.SYN_SENT:
            self.irs = pkt.seq
            self.peer_window = pkt.window
            self._established(now)
        elif not (self.state in (StreamState.ESTABLISHED, StreamState.FIN_WAIT) and pkt.seq == self.irs):
            return
        self._out.append(self._packet(_ACK, self._snd_wire(0), self._rcv_wire(0)))

    def _on_syn_timeout(self, now: float) -> None:
        self._syn_tries += 1
        if self._syn_tries > SYN_RETRIES:
            self._syn_deadline = None
            if self.state is StreamState.SYN_SENT:
                self._finish("dial timeout", StreamState.CLOSED)
            else:
                self._finish("handshake timeout", StreamState.CLOSED)
            return
        self._syn_deadline = now + min(self._syn_rto * 2 ** self._syn_tries, SYN_RTO_MAX)
        if self.state is StreamState.SYN_SENT:
            self._out.append(self._packet(_SYN, self.iss, 0))
        elif self.state is StreamState.SYN_RECEIVED:
            self._out.append(self._packet(_SYNACK, self.iss, (self.irs + 1) & _M))
        else:
            self._syn_deadline = None

    # --- teardown -----------------------------------------------------------------------------

    def _on_rst(self) -> None:
        if self.closed_reason is not None:
            self.state = StreamState.CLOSED
            return
        refused = self.state is StreamState.SYN_SENT
        self._emit(StreamReset(conn_id=self.conn_id))
        self._finish("connection refused" if refused else "reset by peer", StreamState.CLOSED)

    def _on_fin(self, pkt: Packet, now: float) -> None:
        if pkt.flags & _ACK and self.state in (StreamState.ESTABLISHED, StreamState.FIN_WAIT):
            self._process_ack(pkt.ack, now, dup_candidate=False)
        if self.state is StreamState.TIME_WAIT:
            self._out.append(self._packet(_ACK, self._snd_wire(self.snd_nxt + self._fin_sent),
                                          (pkt.seq + 1) & _M))
        elif self.state is StreamState.FIN_WAIT:
            self._enter_time_wait(now, (pkt.seq + 1) & _M)
        elif self.state is StreamState.ESTABLISHED:
            fin = self.rcv_nxt + _s32(pkt.seq - self._rcv_wire(self.rcv_nxt))
            if fin > self.rcv_nxt:
                self._peer_fin = fin   # data before it is missing: hold the FIN, ask for the data
                self._ack_now = True
            else:
                self._accept_fin(now)

    def _accept_fin(self, now: float) -> None:
        self._peer_fin = None
        self._emit(StreamEnded(conn_id=self.conn_id))
        self._enter_time_wait(now, self._rcv_wire(self.rcv_nxt + 1))

    def _enter_time_wait(self, now: float, ack: int) -> None:
        seq = self._snd_wire(self.snd_nxt + self._fin_sent)
        self._out.append(self._packet(_FINACK, seq, ack, window=0))
        self._finish("closed", StreamState.TIME_WAIT)
        self._end_deadline = now + self._time_wait

    def _maybe_send_fin(self, now: float) -> None:
        if self._fin_sent or self._sbuf_base + len(self._sbuf) > self.snd_nxt:
            return
        if self.snd_una < self.snd_nxt and not self._linger_expired:
            return
        self._fin_sent = True
        self._fin_tx = 1
        self._linger_deadline = None
        self._out.append(self._packet(_FIN, self._snd_wire(self.snd_nxt), 0, window=0))
        if self._rto_deadline is None:
            self._rto_deadline = now + self.rtt.rto

    # --- ACK processing (sender side) ---------------------------------------------------------

    def _on_ack(self, pkt: Packet, now: float) -> None:
        if self.state is StreamState.SYN_RECEIVED:
            if _s32(pkt.ack - ((self.iss + 1) & _M)) < 0:
                return
            self._established(now)
        elif self.state not in (StreamState.ESTABLISHED, StreamState.FIN_WAIT):
            return
        payload = pkt.payload
        blocks = sack.decode(payload) if payload else None
        window_same = pkt.window == self.peer_window
        if pkt.window != self.peer_window:
            if self.peer_window == 0 and pkt.window > 0:
                self._probe_deadline = None
                self._probe_interval = ZERO_WINDOW_PROBE
            self.peer_window = pkt.window
        self._process_ack(pkt.ack, now, dup_candidate=(not payload or blocks is not None) and window_same,
                          plain=not payload)
        if blocks is not None:
            self.stats["sack_recv"] += len(blocks)
            self._process_sack(blocks, now)
        if self._high_sacked > self.snd_una or self._retx_live or self._dupacks:
            self._detect_losses(now)
        if self._pto_count == 0 and self._pto_deadline is None and self._rto_deadline is not None:
            self._arm_pto(now)
        if blocks is None and payload:
            if self.state is StreamState.ESTABLISHED:
                self._receive_data(pkt.seq, payload, now)
        elif not payload and self._last_adv == 0 and self._recv_window() > 0:
            self._ack_now = True   # a probe while our window was shut: tell it the window is open

    def _process_ack(self, wire_ack: int, now: float, *, dup_candidate: bool, plain: bool = False) -> None:
        una = self.snd_una
        ack = una + _s32(wire_ack - self._snd_wire(una))
        if ack < una or ack > self.snd_nxt + self._fin_sent:
            return
        if ack == una:
            q = self._q
            if dup_candidate and self._qh < len(q):
                self.stats["dup_acks"] += 1
                if plain:
                    # no SACK blocks (a receiver that leaves them out, or whose SACK twin got lost,
                    # see _send_ack): the n-th duplicate most likely answers the n-th segment after
                    # the hole; the third marks the hole lost (RFC 5681) unless reordering was seen
                    self._dupacks += 1
                    self._pto_count = 0
                    k = self._qh + self._dupacks
                    if k < len(q) and q[k].tx == 1:
                        self.rack.inferred(q[k].sent_at, q[k].end, now)
                    if self._dupacks == DUP_THRESH and not self.rack.reordering_seen:
                        self._mark_head_lost()
            return
        q = self._q
        i = self._qh
        n = len(q)
        acked = 0
        sample = 0.0
        karn = True    # Karn: an ACK that may answer a retransmission gives no RTT sample
        last = None    # the newest segment this ACK delivers (RACK needs one per ACK, not each)
        rack = self.rack
        while i < n and q[i].end <= ack:
            seg = q[i]
            if seg.tx > 1:
                karn = False
                self._retx_live -= 1
                if not seg.sacked:
                    rack.delivered(seg.sent_at, seg.end, seg.tx, now, self.snd_nxt)
            if not seg.sacked:
                if not seg.lost:
                    self._flight -= seg.end - seg.start
                if seg.end - seg.start < self.mss:
                    self._short_inflight -= 1
                acked += seg.end - seg.start
                if seg.sent_at > sample:
                    sample = seg.sent_at
                last = seg
            i += 1
        if last is not None and last.tx == 1:
            rack.delivered(last.sent_at, last.end, 1, now, self.snd_nxt)
        self._qh = i
        if i > 256 and i * 2 > n:
            del q[:i]
            self._qh = 0
        self.snd_una = min(ack, self.snd_nxt)
        if self._fin_sent and ack == self.snd_nxt + 1:
            self._fin_acked = True
            if self.state is StreamState.FIN_WAIT and self._end_deadline is None:
                self._end_deadline = now + self._time_wait
        self._dupacks = 0
        self._pto_count = 0
        self._sack_walked.clear()
        if self._high_sacked < self.snd_una:
            self._high_sacked = self.snd_una
        if karn and sample:
            self.rtt.sample(now - sample)
        self.rtt.reset_backoff()
        cc = self.cc
        if cc.in_recovery and self.snd_una >= cc.recovery_point:
            rack.recovery_done()
        cc.on_ack(acked, self.snd_una)
        self._trim_send_buffer()
        outstanding = self._qh < len(q) or (self._fin_sent and not self._fin_acked)
        if outstanding:
            self._rto_deadline = now + self.rtt.rto
            self._arm_pto(now)
        else:
            self._rto_deadline = self._pto_deadline = self._reo_deadline = None

    def _trim_send_buffer(self) -> None:
        drop = self.snd_una - self._sbuf_base
        if drop > 65536 and drop * 2 > len(self._sbuf):
            del self._sbuf[:drop]
            self._sbuf_base = self.snd_una

    def _process_sack(self, blocks: list[tuple[int, int]], now: float) -> None:
        una = self.snd_una
        base = self._snd_wire(una)
        q = self._q
        n = len(q)
        rack = self.rack
        nxt = self.snd_nxt
        for wl, wr in blocks:
            left = una + _s32(wl - base)
            right = una + _s32(wr - base)
            if right <= una or right <= left or right > nxt:
                continue
            start = max(left, una, self._sack_walked.get(left, una))
            i = bisect_left(q, start, self._qh, n, key=_START)
            sample = 0.0
            karn = True
            while i < n and q[i].end <= right:
                seg = q[i]
                if not seg.sacked and seg.start >= left:
                    seg.sacked = True
                    if seg.lost:
                        seg.lost = False
                    else:
                        self._flight -= seg.end - seg.start
                    if seg.end - seg.start < self.mss:
                        self._short_inflight -= 1
                    if seg.tx > 1:
                        karn = False
                    elif seg.sent_at > sample:
                        sample = seg.sent_at
                    rack.delivered(seg.sent_at, seg.end, seg.tx, now, nxt)
                    self._pto_count = 0
                    self._pto_deadline = None
                i += 1
            self._sack_walked[left] = right
            if right > self._high_sacked:
                self._high_sacked = right
                if karn and sample:
                    self.rtt.sample(now - sample)

    def _mark_lost(self, seg: _Seg) -> None:
        seg.lost = True
        self._flight -= seg.end - seg.start
        self._lostq.append(seg)

    def _mark_head_lost(self) -> None:
        q = self._q
        head = q[self._qh]
        if not head.sacked and not head.lost:
            self._mark_lost(head)
            self._enter_recovery()

    def _enter_recovery(self) -> None:
        """Lost segments were found: one window reduction per episode, and the first resend goes at once."""
        if self.cc.on_loss(self.snd_nxt - self.snd_una, self.snd_una, self.snd_nxt):
            self.stats["fast_retx"] += 1
            self._force_retx = True

    def _detect_losses(self, now: float) -> None:
        """RACK (RFC 8985 §6.2 step 5): a segment is lost when one sent after it was delivered and
        ``rack.rtt + reo_wnd`` has passed since it was sent; the earliest undecided one arms a timer."""
        rack = self.rack
        if rack.xmit_ts < 0:
            return
        horizon = rack.rtt + rack.reo_wnd(self.rtt.srtt or rack.rtt, in_recovery=self.cc.in_recovery)
        xmit_ts, ref_end = rack.xmit_ts, rack.end
        q = self._q
        timeout = 0.0
        found = False
        for i in range(self._qh, len(q)):
            seg = q[i]
            if seg.sacked or seg.lost:
                continue
            sent_at = seg.sent_at
            if not (xmit_ts > sent_at or (xmit_ts == sent_at and ref_end > seg.end)):
                if seg.tx == 1:
                    break      # first transmissions go out in order: all later ones are newer still
                continue
            remaining = sent_at + horizon - now
            if remaining <= 1e-9:
                self._mark_lost(seg)
                found = True
            elif remaining > timeout:
                timeout = remaining
        self._reo_deadline = now + timeout if timeout else None
        if found:
            self._enter_recovery()

    def _arm_pto(self, now: float) -> None:
        """Probe timeout (RFC 8985 §7, RFC 9002 §6.2): SRTT-scaled, doubling per unanswered probe;
        the RTO (and its window collapse) is left for when probes stay unanswered longer than it."""
        srtt = self.rtt.srtt
        if srtt is None or self._pto_count >= MAX_PROBES or self._qh >= len(self._q) or self._rto_deadline is None:
            self._pto_deadline = None
            return
        # SRTT swells when ACKs are held back (reordering that waits for the next packet); the
        # probe is one segment and leaves cwnd alone, so cap it at a few least round trips
        pto = min(max(2 * srtt, srtt + 4 * self.rtt.rttvar), PTO_MIN_RTTS * self.rack.min_rtt)
        pto = max(pto, MIN_PTO)
        if self._flight <= self.mss and self._sbuf_base + len(self._sbuf) <= self.snd_nxt:
            pto += DELAYED_ACK_TIMEOUT     # a lone segment waits out the peer's delayed ACK, unless
                                           # the probe is new data (which makes the peer ACK at once)
        at = now + pto * (1 << self._pto_count)
        self._pto_deadline = at if at < self._rto_deadline else None

    def _on_pto(self, now: float) -> None:
        """Send one probe past cwnd: the first segment waiting to be resent, else new data, else the
        newest outstanding segment (RFC 8985 §7.3). Its answer feeds RACK; cwnd is untouched."""
        self._pto_deadline = None
        q = self._q
        if self._qh >= len(q) or self.state not in (StreamState.ESTABLISHED, StreamState.FIN_WAIT):
            return
        self._pto_count += 1
        lostq = self._lostq
        while lostq:
            seg = lostq.popleft()
            if seg.lost and not seg.sacked and seg.end > self.snd_una:
                seg.lost = False
                self._flight += seg.end - seg.start
                self._resend(seg, now)
                break
        else:
            limit = self.max_outstanding if not 0 <= self.peer_window < self.max_outstanding else self.peer_window
            if self._sbuf_base + len(self._sbuf) > self.snd_nxt and len(q) - self._qh < limit:
                self._tlp_new = True       # _fill sends it
            else:
                for i in range(len(q) - 1, self._qh - 1, -1):
                    seg = q[i]
                    if not seg.sacked and not seg.lost:
                        self._resend(seg, now)
                        break
        self._rto_deadline = now + self.rtt.rto
        self._arm_pto(now)

    def _resend(self, seg: _Seg, now: float) -> None:
        if seg.tx == 1:
            self._retx_live += 1
        seg.tx += 1
        seg.sent_at = now
        self.stats["retransmits"] += 1
        self._out.append(self._packet(_ACK, self._snd_wire(seg.start), self._rcv_wire(self.rcv_nxt), seg.data))

    def _on_rto(self, now: float) -> None:
        q = self._q
        self._pto_deadline = self._reo_deadline = None
        self._pto_count = MAX_PROBES       # after a timeout only the RTO runs until an ACK delivers
        if self._qh >= len(q):
            if self._fin_sent and not self._fin_acked:
                if self._fin_tx >= MAX_RETX_ATTEMPTS:
                    self._give_up()
                    return
                self._fin_tx += 1
                self.rtt.backoff()
                self._out.append(self._packet(_FIN, self._snd_wire(self.snd_nxt), 0, window=0))
                self._rto_deadline = now + self.rtt.rto
            else:
                self._rto_deadline = None
            return
        head = q[self._qh]
        if head.tx >= MAX_RETX_ATTEMPTS:
            self._give_up()
            return
        self.cc.on_timeout(self.snd_nxt - self.snd_una, self.snd_nxt, first=head.tx == 1)
        self.rtt.backoff()
        self._dupacks = 0
        for seg in q[self._qh:]:
            if not seg.sacked and not seg.lost:
                seg.lost = True
                self._flight -= seg.end - seg.start
        if head.sacked:   # SACKed but never cumulatively acked: the receiver dropped it, resend
            head.sacked = False
            head.lost = True
            if head.end - head.start < self.mss:
                self._short_inflight += 1
        self._lostq = deque(seg for seg in q[self._qh:] if seg.lost)
        self._rto_deadline = now + self.rtt.rto

    def _give_up(self) -> None:
        self._out.append(self._packet(_RST, 0, 0, window=0))
        self._finish("retransmission limit reached", StreamState.CLOSED)

    def _on_keepalive(self, now: float) -> None:
        self._ka_next = None
        if self.state is not StreamState.ESTABLISHED:
            return
        idle = now - self._last_activity
        if idle >= self._idle_timeout:
            self._emit(IdleTimedOut(conn_id=self.conn_id))
            self.close(now)
            return
        if idle < self._keepalive and self._ka_probes == 0:
            self._ka_next = self._last_activity + self._quiet_check
            return
        if self._ka_probes >= KEEPALIVE_PROBES:
            self._out.append(self._packet(_RST, 0, 0, window=0))
            self._finish("dead peer: keepalives unanswered", StreamState.CLOSED)
            return
        self._ka_probes += 1
        self._out.append(self._packet(_ACK, self._snd_wire(self.snd_nxt), self._rcv_wire(self.rcv_nxt)))
        self._ka_next = min(now + KEEPALIVE_PROBE_INTERVAL, self._last_activity + self._idle_timeout)

    # --- receiving data -----------------------------------------------------------------------

    def _receive_data(self, wire_seq: int, payload: bytes, now: float) -> None:
        rcv = self.rcv_nxt
        off = rcv + _s32(wire_seq - self._rcv_wire(rcv))
        end = off + len(payload)
        self.stats["segs_recv"] += 1
        if end <= rcv:
            self._ack_now = True     # a duplicate: the peer missed our ACK
            return
        if off > rcv:
            ooo = self._ooo
            if off not in ooo and len(ooo) < MAX_OOO_SEGMENTS:
                ooo[off] = payload
            self._ack_now = True
            return
        if off < rcv:
            payload = payload[rcv - off:]
        self._deliver(payload)
        rcv = end
        ooo = self._ooo
        if ooo:
            filled = False
            while True:
                data = ooo.pop(rcv, None)
                if data is None:
                    if filled and self._trim_ooo(rcv):
                        continue
                    break
                self._deliver(data)
                rcv += len(data)
                filled = True
            if filled:
                self._ack_now = True
        self.rcv_nxt = rcv
        if not self._ack_now:
            self._ack_pending += 1
            if self._ack_pending >= DELAYED_ACK_SEGMENTS:
                self._ack_now = True
            elif self._ack_deadline is None:
                self._ack_deadline = now + DELAYED_ACK_TIMEOUT
        if self._peer_fin is not None and rcv >= self._peer_fin:
            self._accept_fin(now)

    def _trim_ooo(self, rcv: int) -> bool:
        """Drop buffered segments the edge has passed, keeping tails past it; True if one now starts there."""
        ooo = self._ooo
        for key in [k for k in ooo if k < rcv]:
            data = ooo.pop(key)
            if key + len(data) > rcv and rcv not in ooo:
                ooo[rcv] = data[rcv - key:]
        return rcv in ooo

    def _deliver(self, data: bytes) -> None:
        self._rx.append(data)
        self.stats["bytes_recv"] += len(data)
        if not self.auto_consume:
            self._unconsumed += len(data)

    def _send_ack(self, now: float) -> None:
        self._ack_now = False
        self._ack_pending = 0
        self._ack_deadline = None
        seq, ack = self._snd_wire(self.snd_nxt + self._fin_sent), self._rcv_wire(self.rcv_nxt)
        if self._ooo:
            if self._hole_at != self.rcv_nxt:
                self._hole_at = self.rcv_nxt
                self._hole_dups = 0
            self._hole_dups += 1
            if self._hole_dups <= DUP_THRESH:
                # an official sender counts only empty ACKs as duplicates: the first three of a hole
                # also go plain, so its fast retransmit fires; the SACK twin is for senders like ours
                self._out.append(self._packet(_ACK, seq, ack))
            self._out.append(self._packet(_ACK, seq, ack, self._sack_payload()))
        else:
            self._out.append(self._packet(_ACK, seq, ack))

    def _sack_payload(self) -> bytes:
        ranges = sorted((k, k + len(v)) for k, v in self._ooo.items())
        blocks = sack.blocks_above(ranges)
        self.stats["sack_sent"] += len(blocks)
        return sack.encode([(self._rcv_wire(l), self._rcv_wire(r)) for l, r in blocks])

    # --- sending data -------------------------------------------------------------------------

    def _fill(self, now: float) -> None:
        cwnd = self.cc.cwnd
        ack = self._rcv_wire(self.rcv_nxt)
        sent_any = False
        lostq = self._lostq
        while lostq and (self._flight < cwnd or self._flight == 0 or self._force_retx):
            self._force_retx = False
            seg = lostq.popleft()
            if not seg.lost or seg.sacked or seg.end <= self.snd_una:
                continue
            seg.lost = False
            self._flight += seg.end - seg.start
            self._resend(seg, now)
            sent_any = True
        unsent = self._sbuf_base + len(self._sbuf) - self.snd_nxt
        if unsent > 0:
            sent_any |= self._send_new(now, ack, unsent)
        if sent_any:
            self._ack_pending = 0
            self._ack_deadline = None
            if self._rto_deadline is None:
                self._rto_deadline = now + self.rtt.rto
            if self._pto_deadline is None:
                self._arm_pto(now)
        if self._closing and not self._fin_sent:
            self._maybe_send_fin(now)

    def _send_new(self, now: float, ack: int, unsent: int) -> bool:
        out = self._out
        q = self._q
        mss = self.mss
        limit = self.max_outstanding
        if 0 <= self.peer_window < limit:
            limit = self.peer_window
        cwnd = self.cc.cwnd
        # limited transmit (RFC 3042): a new segment per early duplicate ACK keeps the ACK clock going
        extra = self._dupacks * mss if self._dupacks < DUP_THRESH and not self.cc.in_recovery else 0
        probe = self._tlp_new          # a probe carrying new data (RFC 8985 §7.3): one segment past cwnd
        self._tlp_new = False
        sbuf = self._sbuf
        base = self._sbuf_base
        window = self._advertise()
        stats = self.stats
        sent = False
        while unsent > 0:
            if len(q) - self._qh >= limit:
                if self.peer_window == 0 and self._qh >= len(q) and self._probe_deadline is None:
                    self._probe_deadline = now + self._probe_interval
                break
            size = mss if unsent >= mss else unsent
            if self._flight and self._flight + size > cwnd + extra and not probe:
                break
            probe = False
            if size < mss and not (self.nodelay or self._closing or self._nagle_expired):
                if self._short_inflight > 0:
                    if self._nagle_deadline is None:
                        self._nagle_deadline = now + NAGLE_TIMEOUT
                    break
            pos = self.snd_nxt - base
            data = bytes(sbuf[pos:pos + size])
            if data[:4] == sack.MAGIC:
                size = sack.guard_payload(data)
                data = data[:size]
            seg = _Seg(self.snd_nxt, data, now)
            q.append(seg)
            self.snd_nxt += size
            self._flight += size
            unsent -= size
            if size < mss:
                self._short_inflight += 1
            stats["segs_sent"] += 1
            stats["bytes_sent"] += size
            out.append(Packet(_STREAM, self.local.addr, self.remote.addr, self.local.port,
                              self.remote.port, _ACK, self._snd_wire(seg.start), ack, window, data))
            sent = True
        if sent:
            self._nagle_expired = False
            self._nagle_deadline = None
            self._last_activity = now
        return sent


def _noop(stream: Stream) -> None:
    return None
