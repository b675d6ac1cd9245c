"""Circuit breakers (pybreaker) around backend calls, optionally shared by every replica through Redis.

pybreaker supplies the state machine, counters, storage and listeners; it has no asyncio support (only
Tornado), so this module drives it around an await: `admit()` before the call (fails fast while open, lets
exactly one probe through when the reset timeout has passed), `record()` after it (pybreaker's own `call`
with a function that returns or raises, so its counting and tripping rules apply unchanged).

Shared state: pybreaker's `CircuitRedisStorage` reads Redis synchronously on every state check, several
times per call; on an asyncio gateway that blocks the event loop for every replica's every call (and for
the whole socket timeout while Redis is down). `SharedStorage` keeps state in memory (the hot path never
touches the network) and mirrors transitions to Redis in the background: opens and closes are published to
every replica by `gateway.resilience.redis_link`, which applies what the others publish.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.config.resilience import BreakerSettings

# pybreaker imports redis-py whenever it is installed, for its `CircuitRedisStorage`, which the gateway never
# uses (see above); redis-py brings the OpenTelemetry metrics SDK: ~0.15-0.2 s of CPU in every gateway process.
# So redis reads as absent while pybreaker is imported (a None entry in sys.modules makes that import fail:
# pybreaker then leaves its Redis storage out), unless something imported it already.
_hide_redis = "redis" not in sys.modules
if _hide_redis:
    sys.modules["redis"] = None  # type: ignore[assignment]
try:
    import pybreaker
finally:
    if _hide_redis:
        del sys.modules["redis"]

logger = logging.getLogger("mcp_gateway.breaker")

Publish = Callable[[str, str, float | None], None]
STATE_CODE = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class BreakerOpen(Exception):
    """The call was refused without reaching the backend."""


class _Failure(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _succeed() -> None:
    return None


def _fail(kind: str) -> None:
    raise _Failure(kind)


class SharedStorage(pybreaker.CircuitMemoryStorage):
    """In-memory state; opens and closes are handed to `publish` (a non-blocking enqueue) for the replicas."""

    def __init__(self, name: str, publish: Publish | None) -> None:
        super().__init__(pybreaker.STATE_CLOSED)
        self.breaker_name = name
        self.publish = publish

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state
        if self.publish is not None and state != pybreaker.STATE_HALF_OPEN:  # probes are per replica
            opened = self._opened_at.timestamp() if state == pybreaker.STATE_OPEN and self._opened_at else None
            self.publish(self.breaker_name, state, opened)

    def apply_remote(self, state: str, opened_at: float | None) -> None:
        """Take a state another replica published (does not publish again)."""
        if opened_at is not None:
            self._opened_at = datetime.fromtimestamp(opened_at, UTC)
        self._state = state


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: Breaker) -> None:
        self.owner = owner

    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        before = old.name if old is not None else "?"
        self.owner.transitions[new.name] = self.owner.transitions.get(new.name, 0) + 1
        if new.name == pybreaker.STATE_OPEN:
            logger.warning(
                "breaker %s: %s -> open (%s); failing fast for %g s",
                cb.name,
                before,
                self.owner.last_failure or "opened by another replica",
                cb.reset_timeout,
            )
        elif new.name == pybreaker.STATE_CLOSED:
            logger.warning("breaker %s: %s -> closed; backend calls resume", cb.name, before)
        else:
            logger.info("breaker %s: %s -> half-open; letting one probe through", cb.name, before)


class Breaker:
    """One breaker (a backend's, or one tool's)."""

    def __init__(self, name: str, settings: BreakerSettings, publish: Publish | None) -> None:
        self.name = name
        self.settings = settings
        self.counted = frozenset(settings.count)
        self.storage = SharedStorage(name, publish)
        self.transitions: dict[str, int] = {}
        self.rejected = 0
        self.failures = 0
        self.last_failure: str | None = None
        self.probing = False
        self.cb = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max,
            reset_timeout=settings.reset_timeout,
            success_threshold=settings.success_threshold,
            state_storage=self.storage,
            listeners=[_Listener(self)],
            name=name,
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        return self.cb.state.name  # also notices a state another replica published

    def retry_at(self) -> float | None:
        """Epoch seconds when an open breaker lets a probe through."""
        opened = self.storage.opened_at
        return opened.timestamp() + self.settings.reset_timeout if opened else None

    def admit(self) -> bool:
        """Let a call through (True if it is the probe of a half-open breaker) or raise `BreakerOpen`."""
        if self.storage.state == pybreaker.STATE_CLOSED:  # almost every call: pybreaker's `cb.state` follows
            return False  # the storage (a state set in it from outside is noticed at once: `Breakers.apply_remote`)
        state = self.cb.state.name
        if state == pybreaker.STATE_CLOSED:
            return False
        if self.probing:
            self.rejected += 1
            raise BreakerOpen(
                f"backend '{self.name}' is recovering: its circuit breaker is letting one probe call through; "
                "try again shortly"
            )
        if state == pybreaker.STATE_OPEN:
            retry_at = self.retry_at()
            now = time.time()
            if retry_at is not None and now < retry_at:
                self.rejected += 1
                when = datetime.fromtimestamp(retry_at, UTC).strftime("%H:%M:%S")
                cause = f" ({self.last_failure})" if self.last_failure else ""
                raise BreakerOpen(
                    f"backend '{self.name}' is failing fast: its circuit breaker is open after repeated "
                    f"failures{cause}; it will be retried in {retry_at - now:.1f} s (at {when} UTC)"
                )
            self.cb.half_open()
        self.probing = True
        return True

    def record(self, failure: str | None, probe: bool) -> None:
        """Count one finished call: `failure` is its failure kind, None if the backend answered properly."""
        try:
            if failure is not None and failure in self.counted:
                self.failures += 1
                self.last_failure = failure
                self.cb.call(_fail, failure)
            elif probe or self.storage.counter or self.storage.state != pybreaker.STATE_CLOSED:
                self.cb.call(_succeed)
        except (_Failure, pybreaker.CircuitBreakerError):
            pass
        finally:
            if probe:
                self.probing = False

    def close(self) -> None:
        """Close the breaker (the backend was restarted and answered its handshake and lists)."""
        self.probing = False
        if self.cb.state.name != pybreaker.STATE_CLOSED or self.storage.counter:
            self.cb.close()

    def release_probe(self, probe: bool) -> None:
        """The call was abandoned (cancelled) before it had an outcome."""
        if probe:
            self.probing = False

    def snapshot(self) -> dict[str, Any]:
        state = self.state
        doc: dict[str, Any] = {
            "state": state,
            "failures": self.storage.counter,
            "fail_max": self.settings.fail_max,
            "total_failures": self.failures,
            "rejected": self.rejected,
            "opened": self.transitions.get(pybreaker.STATE_OPEN, 0),
            "last_failure": self.last_failure,
        }
        if state == pybreaker.STATE_OPEN and (retry_at := self.retry_at()) is not None:
            doc["retry_in"] = round(max(0.0, retry_at - time.time()), 3)
        return doc


class Breakers:
    """Every breaker of this gateway, by name; created on first use."""

    def __init__(self) -> None:
        self.by_name: dict[str, Breaker] = {}
        self.publish: Publish | None = None
        self._remote: dict[str, tuple[str, float | None]] = {}

    def get(self, name: str, settings: BreakerSettings) -> Breaker:
        breaker = self.by_name.get(name)
        if breaker is None:
            breaker = self.by_name[name] = Breaker(name, settings, self._publish)
            if (remote := self._remote.pop(name, None)) is not None:
                breaker.storage.apply_remote(*remote)
        return breaker

    def forget(self, server: str) -> None:
        """Drop the breakers of `server` (its own and its tools'): it now names another backend."""
        for name in [name for name in self.by_name if name == server or name.startswith(server + "/")]:
            del self.by_name[name]

    def _publish(self, name: str, state: str, opened_at: float | None) -> None:
        if self.publish is not None:
            self.publish(name, state, opened_at)

    def apply_remote(self, name: str, state: str, opened_at: float | None) -> None:
        if state not in STATE_CODE:
            return
        breaker = self.by_name.get(name)
        if breaker is None:
            self._remote[name] = (state, opened_at)
        elif breaker.storage.state != state or state == pybreaker.STATE_OPEN:
            breaker.storage.apply_remote(state, opened_at)
            _ = breaker.state  # let pybreaker notice (listeners log the change)
