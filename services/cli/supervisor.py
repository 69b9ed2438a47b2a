"""Start processes in tiers, watch them, restart the ones that crash, stop them in reverse order.

A tier is a group of processes that may start together (the broker; every
region's Redis; every region's cache service). :meth:`Supervisor.launch` starts
a tier and waits until each member is ready, so a tier only starts once the
tiers it depends on serve; :meth:`Supervisor.stop` stops the tiers newest
first, the members of one tier in parallel.

Once the platform runs, :meth:`Supervisor.watch` restarts a member that exits
on its own, the way systemd's ``Restart=on-failure`` or Kubernetes would: after
a delay that doubles with each crash in a row (0.5 s up to 30 s, reset once
the member has run for a while), so a process that cannot start does not spin.
With ``on_failure="stop"`` the first crash ends the watch instead.

Children are started from the main thread: they get a parent-death signal
(``libs.common.processes``), which the kernel sends when the *thread* that
forked them exits.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Literal

from libs.common.processes import ManagedProcess
from services.cli.errors import CliError

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
OnFailure = Literal["restart", "stop"]
# restart delays: the first crash waits FIRST_DELAY, each crash in a row doubles it
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
# a member that ran this long before crashing starts over at FIRST_DELAY
STABLE_AFTER = 30.0


@dataclass(frozen=True)
class Member:
    """One supervised process: ``key`` is its ``<role>:<region>`` in cluster.json."""

    key: str
    proc: ManagedProcess
    ready: Callable[[], bool]
    # run once a crashed member was started again (the embedded broker, which keeps
    # nothing on disk, needs its topics back)
    after_restart: Callable[[], None] | None = None

    def exit_code(self) -> int | None:
        return None if self.proc.popen is None else self.proc.popen.returncode


class Interrupted(Exception):
    """A stop signal arrived while the platform was starting."""


class StartupFailed(CliError):
    """A member exited or did not get ready in time; ``member`` has the log to show."""

    def __init__(self, member: Member, why: str) -> None:
        super().__init__(f"{member.key} {why}")
        self.member = member


class StopFlag:
    """Records SIGINT, SIGTERM or SIGHUP; the supervisor polls it.

    The handler only sets an attribute: taking a lock (``threading.Event``) in
    a handler can deadlock against the interrupted main thread.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def is_set(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum


class Supervisor:
    """Owns every process it launched until :meth:`stop` (idempotent)."""

    def __init__(
        self,
        stop_flag: StopFlag,
        *,
        ready_timeout: float,
        grace: float = 10.0,
        on_failure: OnFailure = "restart",
    ) -> None:
        self._stop_flag = stop_flag
        self._ready_timeout = ready_timeout
        # One deadline for the whole startup: what the user waits for is the platform.
        self._deadline = time.monotonic() + ready_timeout
        self._grace = grace
        self._tiers: list[list[Member]] = []
        self.on_failure = on_failure
        # restarts per member key since `up` began
        self.restarts: dict[str, int] = {}
        self._crashes_in_a_row: dict[str, int] = {}
        self._started_at: dict[str, float] = {}
        # members waiting out their restart delay: key -> monotonic time of the restart
        self._restart_at: dict[str, float] = {}

    @property
    def members(self) -> list[Member]:
        return [member for tier in self._tiers for member in tier]

    def launch(self, tier: list[Member]) -> None:
        """Start ``tier`` and return once every member is ready.

        Raises :class:`StartupFailed` when a member exits or the deadline
        passes, :class:`Interrupted` on a stop signal; what started stays
        owned, for :meth:`stop`.
        """
        self._tiers.append(tier)
        for member in tier:
            log.info("starting %s", member.key)
            try:
                member.proc.start()
            except OSError as exc:
                raise StartupFailed(member, f"could not start: {exc}") from None
            self._started_at[member.key] = time.monotonic()
        pending = list(tier)
        while True:
            if self._stop_flag.is_set():
                raise Interrupted
            # Earlier tiers too: a service never gets ready once its broker or Redis died.
            dead = self._first_dead()
            if dead is not None:
                raise StartupFailed(dead, f"exited with code {dead.exit_code()}")
            pending = [member for member in pending if not member.ready()]
            if not pending:
                break
            if time.monotonic() >= self._deadline:
                raise StartupFailed(pending[0], f"not ready after {self._ready_timeout:g} s")
            time.sleep(0.1)
        for member in tier:
            log.info("%s ready (pid %d)", member.key, member.proc.pid)

    def watch(
        self, *, interval: float = 0.2, restarted: Callable[[], None] | None = None
    ) -> Member | None:
        """Block until a stop signal (``None``); a member that exits meanwhile is restarted
        after its delay (``restarted`` is called after each restart), or with
        ``on_failure="stop"`` returned."""
        while not self._stop_flag.is_set():
            now = time.monotonic()
            for member in self.members:
                due = self._restart_at.get(member.key)
                if due is not None:
                    if now >= due:
                        self._restart(member)
                        if restarted is not None:
                            restarted()
                elif not member.proc.alive():
                    if self.on_failure == "stop":
                        return member
                    self._schedule_restart(member, now)
            time.sleep(interval)
        return None

    def _schedule_restart(self, member: Member, now: float) -> None:
        if now - self._started_at.get(member.key, now) >= STABLE_AFTER:
            self._crashes_in_a_row[member.key] = 0
        crashes = self._crashes_in_a_row.get(member.key, 0) + 1
        self._crashes_in_a_row[member.key] = crashes
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (crashes - 1))
        self._restart_at[member.key] = now + delay
        log.error(
            "%s (pid %d) exited unexpectedly with code %s; restarting it in %.1f s "
            "(crash %d in a row)\n--- last lines of %s ---\n%s",
            member.key,
            member.proc.pid,
            member.exit_code(),
            delay,
            crashes,
            member.proc.log_path,
            member.proc.log_tail(),
        )

    def _restart(self, member: Member) -> None:
        del self._restart_at[member.key]
        try:
            member.proc.start()
        except OSError as exc:  # e.g. the binary vanished: try again after a longer delay
            log.error("could not restart %s: %s", member.key, exc)
            self._schedule_restart(member, time.monotonic())
            return
        self._started_at[member.key] = time.monotonic()
        self.restarts[member.key] = self.restarts.get(member.key, 0) + 1
        log.info("%s restarted (pid %d)", member.key, member.proc.pid)
        if member.after_restart is not None:
            try:
                member.after_restart()
            except Exception as exc:  # the member runs; what it needs may follow later
                log.error("after restarting %s: %r", member.key, exc)

    def _first_dead(self) -> Member | None:
        return next((m for m in self.members if not m.proc.alive()), None)

    def stop(self) -> None:
        """Stop tiers newest first, each member with SIGTERM then SIGKILL after the grace."""
        while self._tiers:
            tier = [m for m in self._tiers.pop() if m.proc.popen is not None]
            if not tier:
                continue
            log.info("stopping %s", ", ".join(m.key for m in tier))
            with ThreadPoolExecutor(max_workers=len(tier)) as pool:
                codes = list(pool.map(lambda m: m.proc.stop(self._grace), tier))
            for member, code in zip(tier, codes, strict=True):
                log.info("stopped %s (exit code %s)", member.key, code)
