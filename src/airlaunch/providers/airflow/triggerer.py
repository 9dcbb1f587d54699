"""What one triggerer shares among its triggers: one ``TriggererLoop`` per event loop.

An Airflow triggerer runs every trigger it holds on one asyncio event loop. What those triggers
share lives in that loop's ``TriggererLoop`` (``TriggererLoop.current()``), and nowhere else:

* Clients: one aiobotocore client per service, connection, region and ``pool``, opened once however
  many triggers ask for it at once, and closed when the loop ends. A new client costs a botocore
  session and SSL contexts (tens of milliseconds of CPU); opened per request, that was most of the
  triggerer's CPU with a few dozen tasks. A ``pool`` of its own (launches) keeps other calls from
  queueing behind slow ones for the client's ten connections. Each client asks its server to keep its
  connections (``aws_clients.keep_connections``): LocalStack closes every one that does not ask.
* Status notifications: one SQS long poll per queue, connection and region
  (``status_notifications.StatusListener``), living as long as the loop, not as long as its tasks.
* Orphan sweeps: one per launcher, keyed by its function name, connection and region, so a
  triggerer whose tasks use two launcher functions or two connections sweeps the containers of
  each (``orphan_sweep``), every ``sweep_seconds``.
* The read budget: the triggers watching a container register while they do; ``stretch`` spreads
  their periodic reads so that all of them together make about ``triggerer_reads_per_second``.
* Shared reads: triggers asking for the same thing at the same moment (a fan-out's items, read from
  their upstream's XCom through the triggerer's supervisor, which serves one request a turn of its
  loop) share one read (``shared_read``); nothing is kept once it has come back.

``sweep_seconds`` and ``triggerer_reads_per_second`` are the triggerer's own settings, read once
when its loop's first trigger runs; everything a single task decides travels in its trigger.
When the loop ends (``asyncio.run`` cancels what still runs, and so does a triggerer that stops)
the clients are closed as aiobotocore intends and the loop's entry is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airlaunch.aws_clients import keep_connections
from airlaunch.providers.airflow.settings import AirflowSettings
from airlaunch.providers.airflow.triggers import orphan_sweep
from airlaunch.providers.airflow.triggers.status_notifications import StatusListener

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    from airlaunch.providers.airflow.hooks.launcher import LauncherHook


@dataclass(frozen=True)
class TriggererSettings:
    """What one triggerer decides for all its tasks together (the ``[airlaunch]`` options of the same names)."""

    sweep_seconds: float
    triggerer_reads_per_second: float

    @classmethod
    def read(cls) -> TriggererSettings:
        settings = AirflowSettings()
        return cls(settings.sweep_seconds, settings.triggerer_reads_per_second)


def requested_region(hook: AwsGenericHook) -> str | None:
    """The region a hook was created with (None: the connection's), without reading the connection."""
    region: str | None = vars(hook).get("_region_name")
    return region


class TriggererLoop:
    """The shared state of the running event loop's triggers (see the module's docstring)."""

    _loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TriggererLoop] = weakref.WeakKeyDictionary()

    def __init__(self, settings: TriggererSettings | None = None) -> None:
        self._given = settings
        self.clients: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self.listeners: dict[tuple[str, str | None, str | None], StatusListener] = {}
        self.sweeps: dict[tuple[str, str | None, str | None], asyncio.Task[None]] = {}
        self.watching: weakref.WeakSet[Any] = weakref.WeakSet()
        self.reads: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self._keeper = asyncio.ensure_future(self._close_when_the_loop_ends())

    @classmethod
    def current(cls) -> TriggererLoop:
        """The running loop's TriggererLoop, made by the first to ask."""
        loop = asyncio.get_running_loop()
        shared = cls._loops.get(loop)
        if shared is None:
            shared = cls._loops[loop] = cls()
        return shared

    @functools.cached_property
    def settings(self) -> TriggererSettings:
        """The triggerer's own settings, read when first needed (a loop that only opens clients never reads them)."""
        return self._given or TriggererSettings.read()

    # -- clients ------------------------------------------------------------------------------------------
    async def client(self, hook: AwsGenericHook, pool: str = "") -> Any:
        """The hook's aiobotocore client, opened once per service, connection, region and ``pool``, and kept.

        Keyed by what the hook was asked for, not ``hook.region_name``: that reads the Airflow connection,
        through the triggerer's supervisor, for every new hook; 500 triggers starting together queued for
        tens of seconds behind those lookups. A changed connection is picked up when the triggerer restarts.
        """
        key = (hook.client_type, hook.aws_conn_id, requested_region(hook), pool)
        if key not in self.clients:  # one creation however many triggers ask at once

            async def open_client() -> Any:
                return keep_connections(await (await hook.get_async_conn()).__aenter__())

            self.clients[key] = asyncio.ensure_future(open_client())
        try:
            return await self.clients[key]
        except Exception:
            self.clients.pop(key, None)
            raise

    async def shared_read(self, key: tuple[Any, ...], read: Callable[[], Awaitable[Any]]) -> Any:
        """``read()``'s value, from the read of the same ``key`` already under way on this loop if there is one;
        nothing is kept once it has come back. The callers share one answer but not its cancellation: a trigger
        cancelled while it waits leaves the read to the others."""
        shared = self.reads.get(key)
        if shared is None:
            shared = self.reads[key] = asyncio.ensure_future(read())
            shared.add_done_callback(lambda done: self.reads.pop(key, None) if self.reads.get(key) is done else None)
        return await asyncio.shield(shared)

    # -- status notifications -----------------------------------------------------------------------------
    def listener(self, queue: str, aws_conn_id: str | None, region_name: str | None) -> StatusListener:
        """The loop's listener for the queue (it restarts itself after errors)."""
        key = (queue, aws_conn_id, region_name)
        if key not in self.listeners:
            self.listeners[key] = StatusListener(queue, aws_conn_id, region_name)
        return self.listeners[key]

    # -- orphan sweeps --------------------------------------------------------------------------------------
    def ensure_sweep(self, hook: LauncherHook) -> None:
        """Sweep this hook's launcher (function, connection, region) from now on, unless the loop does already."""
        key = (hook.function_name, hook.aws_conn_id, requested_region(hook))
        if self.settings.sweep_seconds > 0 and key not in self.sweeps:
            name = f"airlaunch-orphan-sweep-{hook.function_name}-{hook.aws_conn_id}"
            self.sweeps[key] = asyncio.ensure_future(orphan_sweep.sweep_forever(hook, self.settings.sweep_seconds))
            self.sweeps[key].set_name(name)

    # -- the read budget -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def watched(self, trigger: Any) -> Iterator[None]:
        """Count ``trigger`` among the loop's watching triggers while the block runs."""
        self.watching.add(trigger)
        try:
            yield
        finally:
            self.watching.discard(trigger)

    def stretch(self, log_every: int, poll_interval: float) -> int:
        """How many times further apart a trigger's periodic reads go (two per ``log_every`` ticks of
        ``poll_interval`` each), so that the loop's watching triggers together make about
        ``triggerer_reads_per_second`` of them."""
        per_second = 2 * len(self.watching) / (log_every * poll_interval)
        return max(1, math.ceil(per_second / self.settings.triggerer_reads_per_second))

    # -- the end of the loop ----------------------------------------------------------------------------------
    async def _close_when_the_loop_ends(self) -> None:
        """Wait for ever; when the loop ends, close its clients (``__aexit__``), so that no session is left open
        for the interpreter to complain about at exit, and forget this loop."""
        try:
            await asyncio.Event().wait()
        finally:
            for opened in list(self.clients.values()):
                if opened.done() and not opened.cancelled() and opened.exception() is None:
                    with contextlib.suppress(Exception):
                        await opened.result().__aexit__(None, None, None)
            self.clients.clear()
            for sweep in self.sweeps.values():
                sweep.cancel()
            with contextlib.suppress(RuntimeError):
                self._loops.pop(asyncio.get_running_loop(), None)
