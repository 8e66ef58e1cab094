"""Congestion window: slow start, congestion avoidance, fast recovery (RFC 5681/6675 style).

Bytes throughout. Start values are the official 1.18 ones (``pkg/daemon/ports.go``):
cwnd = 10 × 4096 = 40960 (``InitialCongWin``, IW10 of the 4096-byte ``MaxSegmentSize``),
ssthresh = 512 KiB, cwnd capped at 1 MiB. Growth uses appropriate byte counting (RFC 3465) with
the sender's real segment size: slow start adds min(acked, 2·SMSS) per ACK, avoidance one SMSS
per cwnd of acknowledged bytes (so delayed ACKs do not halve the growth). On loss (duplicate
ACKs, SACK or RACK evidence) ssthresh = max(FlightSize/2, 2·SMSS), FlightSize being all data
outstanding, and cwnd = ssthresh once per episode (an episode ends when ``snd_una`` passes the
recovery point); on a retransmission timeout cwnd drops to one segment (RFC 5681 loss window).
"""

from __future__ import annotations

INITIAL_CWND = 10 * 4096
INITIAL_SSTHRESH = 512 * 1024
MAX_CWND = 1024 * 1024


class Congestion:
    __slots__ = ("smss", "cwnd", "ssthresh", "in_recovery", "recovery_point", "loss_events", "timeouts",
                 "_avoid_acked")

    def __init__(self, smss: int, cwnd: int = INITIAL_CWND) -> None:
        self.smss = smss
        self.cwnd = cwnd
        self.ssthresh = INITIAL_SSTHRESH
        self.in_recovery = False
        self.recovery_point = 0
        self.loss_events = 0
        self.timeouts = 0
        self._avoid_acked = 0

    def on_ack(self, acked: int, snd_una: int) -> None:
        """``acked`` bytes newly acknowledged; ``snd_una`` is the new cumulative point."""
        if self.in_recovery:
            if snd_una < self.recovery_point:
                return  # partial ACK: hold cwnd (RFC 6675 keeps sending by pipe)
            self.in_recovery = False
            self.cwnd = max(self.ssthresh, self.smss)
            return
        if acked <= 0:
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, 2 * self.smss)
        else:
            self._avoid_acked += acked
            if self._avoid_acked >= self.cwnd:
                self._avoid_acked -= self.cwnd
                self.cwnd += self.smss
        if self.cwnd > MAX_CWND:
            self.cwnd = MAX_CWND

    def on_loss(self, flight: int, snd_una: int, snd_nxt: int) -> bool:
        """Loss detected by duplicate ACKs or SACK; True when this starts a new episode.

        Losses in data sent before the last reduction (``snd_una`` below the recovery point)
        belong to that episode and do not reduce the window again.
        """
        if self.in_recovery or snd_una < self.recovery_point:
            return False
        self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.ssthresh
        self.in_recovery = True
        self.recovery_point = snd_nxt
        self.loss_events += 1
        return True

    def on_timeout(self, flight: int, snd_nxt: int, *, first: bool = True) -> None:
        """Retransmission timeout: slow start again from one segment.

        ``first`` is false for a repeated timeout of the same segment: ssthresh stays put.
        """
        if first:
            self.ssthresh = max(flight // 2, 2 * self.smss)
        self.cwnd = self.smss
        self.in_recovery = False
        self.recovery_point = snd_nxt
        self.timeouts += 1
