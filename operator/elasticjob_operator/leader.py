"""Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics: one replica reconciles.

The algorithm (client-go's `leaderelection` with a LeaseLock, restated):

1. Every `retry_period` a candidate reads the Lease. Absent: it creates it, holding it.
2. Held by another: the record (holder, duration, renewTime, transitions) is remembered with the
   local monotonic time at which it was first seen in that form. The lease is free once
   `lease_duration` has passed on *this* clock since then with no change, or when its holder is
   empty (released). Clocks of other hosts are never compared: a renewTime is only a version.
3. Free, or ours: the candidate writes itself as holder with the resourceVersion it read
   (optimistic lock: a 409 means someone else won this round). acquireTime and leaseTransitions
   change only when the holder does.
4. The leader renews every `retry_period`. When no renewal has succeeded for `renew_deadline`, it
   has lost the lease: `leading()` is false from that moment, and `on_lost` runs once.
5. On a clean stop the leader releases the lease (holder emptied), so a standby takes over at its
   next retry rather than after `lease_duration`.

`leading()` counts from the start of the last successful write, on the monotonic clock. A process
frozen (SIGSTOP) past `renew_deadline` therefore sees itself as not leading the moment it wakes,
before any renewal: reconciles check it first. Limits: as with client-go there is no fencing in
the apiserver, so a write already in flight when the process froze may still land after it wakes;
and `renew_deadline < lease_duration` is what keeps a leader from acting after a standby may take
over, so clocks that run at very different rates break it (client-go's caveat too).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

#: client-go's JitterFactor: retries wait retry_period * [1, 1.2)
JITTER = 1.2


@dataclass(frozen=True)
class ElectionSettings:
    """Which Lease, who we are, and the three client-go durations (seconds)."""

    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not (self.name and self.namespace and self.identity):
            raise ValueError("leader election needs a lease name, a namespace and an identity")
        if min(self.lease_duration, self.renew_deadline, self.retry_period) <= 0:
            raise ValueError("the lease duration, renew deadline and retry period must be > 0")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"the lease duration ({self.lease_duration:g} s) must be longer than the renew deadline "
                f"({self.renew_deadline:g} s)"
            )
        if self.renew_deadline <= JITTER * self.retry_period:
            raise ValueError(
                f"the renew deadline ({self.renew_deadline:g} s) must be longer than {JITTER:g} x the retry "
                f"period ({self.retry_period:g} s)"
            )


@dataclass(frozen=True)
class Record:
    """What a Lease says about its holder; `renew_time` is compared only for change."""

    holder: str
    duration: int
    renew_time: str | None
    transitions: int

    @classmethod
    def of(cls, spec: Any) -> Record:
        renew = spec.renew_time
        return cls(
            holder=spec.holder_identity or "",
            duration=int(spec.lease_duration_seconds or 0),
            renew_time=renew.isoformat() if isinstance(renew, datetime) else renew,
            transitions=int(spec.lease_transitions or 0),
        )


def may_take(record: Record, identity: str, observed_at: float, now: float) -> bool:
    """Whether `identity` may write itself into a lease holding `record`, first seen at `observed_at`."""
    return not record.holder or record.holder == identity or now >= observed_at + record.duration


def next_spec(current: Any | None, settings: ElectionSettings, wall: datetime) -> client.V1LeaseSpec:
    """The spec that makes `settings.identity` the holder, renewed at `wall`."""
    ours = current is not None and current.holder_identity == settings.identity
    transitions = 0 if current is None else (current.lease_transitions or 0) + (0 if ours else 1)
    return client.V1LeaseSpec(
        holder_identity=settings.identity,
        lease_duration_seconds=max(1, round(settings.lease_duration)),
        acquire_time=current.acquire_time if current is not None and ours else wall,
        renew_time=wall,
        lease_transitions=transitions,
    )


class LeaderElector:
    """Runs the election on its own thread; `leading()` is safe to call from any thread."""

    def __init__(
        self,
        settings: ElectionSettings,
        api: client.ApiClient,
        on_started: Callable[[], None] = lambda: None,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self._leases = client.CoordinationV1Api(api)
        self._on_started, self._on_lost = on_started, on_lost
        self._observed: tuple[Record, float] | None = None
        self._renewed_at: float | None = None  # monotonic start of the last successful write
        self._contact_at: float | None = None  # monotonic time of the last apiserver answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def leading(self, now: float | None = None) -> bool:
        renewed = self._renewed_at
        now = time.monotonic() if now is None else now
        return renewed is not None and now - renewed < self.settings.renew_deadline

    def in_contact(self, now: float | None = None) -> bool:
        """Whether the apiserver answered within the renew deadline (the readiness check)."""
        contact = self._contact_at
        now = time.monotonic() if now is None else now
        return contact is not None and now - contact < self.settings.renew_deadline

    def holder(self) -> str | None:
        return self._observed[0].holder if self._observed else None

    def stop(self) -> None:
        """Stop the thread; a leader releases the lease."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.settings.retry_period * 2)
        if self.leading():
            self._release()

    def _wait(self) -> bool:
        """Sleep a jittered retry period; whether to go on."""
        return not self._stop.wait(self.settings.retry_period * random.uniform(1.0, JITTER))  # noqa: S311 (jitter, not a secret)

    def _run(self) -> None:
        s = self.settings
        log.info("leader election: %s waits for lease %s/%s", s.identity, s.namespace, s.name)
        while not self._try():
            if not self._wait():
                return
        log.info("leader election: %s holds lease %s/%s; reconciling", s.identity, s.namespace, s.name)
        self._on_started()
        while self._wait():
            if self._try() or self.leading():
                continue
            self._renewed_at = None
            log.error("leader election: %s lost lease %s/%s; reconciling stops", s.identity, s.namespace, s.name)
            self._on_lost()
            return

    def _try(self) -> bool:
        """One acquire-or-renew round; whether we hold the lease after it."""
        s, started = self.settings, time.monotonic()
        timeout = max(1.0, s.retry_period)
        try:
            lease = self._leases.read_namespaced_lease(s.name, s.namespace, _request_timeout=timeout)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("leader election: reading lease %s/%s failed: %s", s.namespace, s.name, exc.reason)
                return False
            return self._create(started, timeout)
        except Exception as exc:
            log.warning("leader election: reading lease %s/%s failed: %s", s.namespace, s.name, exc)
            return False
        self._contact_at = time.monotonic()
        record = Record.of(lease.spec or client.V1LeaseSpec())
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, started)
        if not may_take(record, s.identity, self._observed[1], started):
            return False
        lease.spec = next_spec(lease.spec, s, datetime.now(UTC))
        return self._write("writing", lambda: self._leases.replace_namespaced_lease(
            s.name, s.namespace, lease, _request_timeout=timeout), lease, started)  # fmt: skip

    def _create(self, started: float, timeout: float) -> bool:
        s = self.settings
        lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name=s.name, namespace=s.namespace),
            spec=next_spec(None, s, datetime.now(UTC)),
        )
        return self._write("creating", lambda: self._leases.create_namespaced_lease(
            s.namespace, lease, _request_timeout=timeout), lease, started)  # fmt: skip

    def _write(self, what: str, call: Callable[[], Any], lease: client.V1Lease, started: float) -> bool:
        """Send a lease write; on success we lead, counted from `started`. A 409: another won."""
        s = self.settings
        try:
            call()
        except ApiException as exc:
            if exc.status != 409:
                log.warning("leader election: %s lease %s/%s failed: %s", what, s.namespace, s.name, exc.reason)
            return False
        except Exception as exc:
            log.warning("leader election: %s lease %s/%s failed: %s", what, s.namespace, s.name, exc)
            return False
        self._contact_at, self._renewed_at = time.monotonic(), started
        self._observed = (Record.of(lease.spec), started)
        return True

    def _release(self) -> None:
        s = self.settings
        try:
            lease = self._leases.read_namespaced_lease(s.name, s.namespace, _request_timeout=2)
            if lease.spec is None or lease.spec.holder_identity != s.identity:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            self._leases.replace_namespaced_lease(s.name, s.namespace, lease, _request_timeout=2)
            log.info("leader election: %s released lease %s/%s", s.identity, s.namespace, s.name)
        except Exception as exc:
            log.warning("leader election: releasing lease %s/%s failed: %s", s.namespace, s.name, exc)
        finally:
            self._renewed_at = None
