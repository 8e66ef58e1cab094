"""Retransmission timeout per RFC 6298, with the official 1.18 daemon's bounds.

Official values (``pkg/daemon/ports.go``): initial RTO 1 s, minimum 200 ms, maximum 10 s, clock
granularity G = 10 ms; RTTVAR/SRTT gains 1/4 and 1/8; RTO = SRTT + max(G, 4·RTTVAR). Karn's rule
(no samples from retransmitted segments) is the caller's job: it only calls ``sample`` for
segments sent once. ``backoff`` doubles the RTO after a timeout (RFC 6298 §5.5), capped at 10 s.
"""

from __future__ import annotations

INITIAL_RTO = 1.0
MIN_RTO = 0.2
MAX_RTO = 10.0
CLOCK_GRANULARITY = 0.010


class RttEstimator:
    """Smoothed RTT, variance and the current RTO, in seconds."""

    __slots__ = ("srtt", "rttvar", "rto", "samples", "_base_rto")

    def __init__(self, initial_rto: float = INITIAL_RTO) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto = initial_rto
        self._base_rto = initial_rto
        self.samples = 0

    def sample(self, rtt: float) -> None:
        """Fold in one measurement from a segment sent exactly once (Karn)."""
        rtt = max(rtt, 0.0)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.samples += 1
        self._base_rto = min(max(self.srtt + max(CLOCK_GRANULARITY, 4 * self.rttvar), MIN_RTO), MAX_RTO)
        self.rto = self._base_rto

    def backoff(self) -> None:
        """Double the RTO after a retransmission timeout."""
        self.rto = min(self.rto * 2, MAX_RTO)

    def reset_backoff(self) -> None:
        """New data was acknowledged: drop the backoff (RFC 6298 §5.7 lets the next sample do it)."""
        self.rto = self._base_rto
