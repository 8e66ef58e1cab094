"""RACK-TLP loss detection (RFC 8985) for the stream sender, sans-I/O.

RACK marks a segment lost when a segment sent after it has been delivered (cumulatively acked
or SACKed) and a reordering window has passed since it was sent. It finds lost retransmissions
and losses with too few segments above them for three duplicate ACKs, which is what turns a
lossy link into a string of retransmission timeouts otherwise. TLP (the probe) lives in
``stream``: it only needs ``srtt``.

The Pilot wire has no DSACK, so "a retransmission was spurious" is inferred the RFC 8985 §6.2
step 2 way: a retransmitted segment acknowledged sooner than ``min_rtt`` after the retransmission
was answered by its original. That, like DSACK, widens the reordering window (``reo_wnd_mult``),
and a delivered segment sent once below the highest delivered one shows reordering
(``reordering_seen``). After 16 recoveries without such evidence the multiplier starts over.
``min_rtt`` is the least RTT of the last 10 s (a path that got slower is noticed), from segments
sent once.
"""

from __future__ import annotations

REO_WND_RESET = 16
MIN_RTT_WINDOW = 10.0


class Rack:
    """The most recently sent delivered segment and the reordering window, in seconds and offsets."""

    __slots__ = ("xmit_ts", "end", "rtt", "min_rtt", "fack", "reordering_seen", "reo_wnd_mult",
                 "_spurious_end", "_recoveries", "_min_rtt_at")

    def __init__(self) -> None:
        self.xmit_ts = -1.0          # send time of the most recently sent delivered segment
        self.end = 0                 # its end offset (tie-break for equal send times)
        self.rtt = 0.0               # RTT measured on that segment
        self.min_rtt = float("inf")
        self.fack = 0                # highest end offset delivered so far
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self._spurious_end = -1      # one widening per round trip: not again below this offset
        self._recoveries = 0
        self._min_rtt_at = 0.0

    def delivered(self, sent_at: float, end: int, tx: int, now: float, snd_nxt: int) -> None:
        """A segment (last sent at ``sent_at``, ``tx`` transmissions) was acked or SACKed at ``now``."""
        rtt = now - sent_at
        if tx > 1 and rtt < self.min_rtt:
            # the original answered before the retransmission could: the retransmission was spurious
            if end > self._spurious_end:
                self._spurious_end = snd_nxt
                self.reo_wnd_mult += 1
                self._recoveries = 0
                self.reordering_seen = True
            return
        if tx == 1:
            if rtt <= self.min_rtt or now - self._min_rtt_at > MIN_RTT_WINDOW:
                self.min_rtt = rtt
                self._min_rtt_at = now
            if end < self.fack:
                self.reordering_seen = True
        if end > self.fack:
            self.fack = end
        self.rtt = rtt
        if sent_at > self.xmit_ts or (sent_at == self.xmit_ts and end > self.end):
            self.xmit_ts = sent_at
            self.end = end

    def inferred(self, sent_at: float, end: int, now: float) -> None:
        """A duplicate ACK without SACK blocks says some segment above the hole arrived; the caller
        guesses which (the n-th after the hole for the n-th duplicate). Only the RACK reference moves:
        a guess must not feed ``min_rtt`` or the reordering evidence."""
        if sent_at > self.xmit_ts or (sent_at == self.xmit_ts and end > self.end):
            self.xmit_ts = sent_at
            self.end = end
            self.rtt = now - sent_at

    def recovery_done(self) -> None:
        """A loss recovery ended; after ``REO_WND_RESET`` of them the window multiplier starts over."""
        self._recoveries += 1
        if self._recoveries >= REO_WND_RESET:
            self._recoveries = 0
            self.reo_wnd_mult = 1

    def reo_wnd(self, srtt: float, *, in_recovery: bool) -> float:
        """RFC 8985 §6.2 step 4: no window in recovery until reordering is seen, else min_rtt/4 × mult."""
        if not self.reordering_seen and in_recovery:
            return 0.0
        if self.min_rtt == float("inf"):
            return srtt / 4
        return min(self.min_rtt / 4 * self.reo_wnd_mult, srtt)

    def sent_after(self, sent_at: float, end: int) -> bool:
        """True when the delivered reference segment was sent after (``sent_at``, ``end``)."""
        return self.xmit_ts > sent_at or (self.xmit_ts == sent_at and self.end > end)
