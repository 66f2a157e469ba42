"""The worker: reads its options, prints its banner, runs a pool, shuts down cleanly."""

from __future__ import annotations

import functools
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..exceptions import ConfigurationError
from ..observe.metrics import MULTIPROC_ENV
from ..observe.observer import WorkerObserver
from ..stores.transport import leases_of, require_safe_deliveries
from ..stores.urls import masked
from .hooks import WorkerHooks
from .identity import expand_hostname
from .logs import LoggingListener

if TYPE_CHECKING:
    from ..app import Conveyor
    from .autoscale import Autoscaler, Scalable
    from .executor import AttemptWatcher
    from .loop import ConsumeLoop, LoopConfig
    from .pool import Pool
    from .revocations import RevocationCache

__all__ = ["Worker"]

logger = logging.getLogger("conveyor.worker")


class Worker:
    def __init__(
        self,
        app: Conveyor,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: str | None = None,
        hostname: str | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        prefetch_multiplier: int | None = None,
        app_label: str | None = None,
        beat: bool = False,
        metrics_port: int | None = None,
        processes: int | None = None,
        autoscale: tuple[int, int] | None = None,
    ) -> None:
        conf = app.conf
        self.app = app
        self.beat = beat  # -B: run beat too, in a child process (worker/beat.py)
        self.metrics_port = metrics_port  # --metrics-port: Prometheus (observe/metrics.py)
        self.app_label = app_label or app.main
        self.pool = pool or conf.worker_pool
        from .pools import pool_class

        self.pool_class: type[Pool] = pool_class(self.pool)  # unknown: lists the known
        if self.pool_class.forks and app.broker_url.startswith("memory:"):
            raise ConfigurationError(
                f"the memory:// broker lives inside one process, so {self.pool} children "
                "would each see their own: use -P threads or -P solo with it"
            )
        self.queues = list(queues or [conf.task_default_queue])
        self.concurrency = concurrency or conf.worker_concurrency or os.cpu_count() or 1
        # --processes: event-loop processes of the asyncio pool, each running up to
        # ``concurrency`` tasks at once (other pools take their size from -c alone).
        self.processes = max(1, processes or 1)
        # --autoscale=MAX,MIN: start with MIN, as Celery does (worker/autoscale.py).
        self.autoscale = autoscale
        if autoscale is not None:
            if not self.pool_class.scalable:
                raise ConfigurationError(
                    f"--autoscale needs a pool that can grow: prefork or threads (not {self.pool})"
                )
            self.concurrency = autoscale[1]
        self.hostname = expand_hostname(hostname)
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child or conf.worker_max_memory_per_child
        multiplier = prefetch_multiplier or conf.worker_prefetch_multiplier
        # Threads share the process, so each thread-loop gets its own slice of prefetch.
        self.prefetch = max(1, int(multiplier))
        self.shutdown_timeout = float(conf.worker_shutdown_timeout)
        self.heartbeat_ttl = float(conf.worker_heartbeat_seconds) * 3
        self.hooks = WorkerHooks(app.events, self.hostname, float(conf.worker_heartbeat_seconds))
        self.stop = threading.Event()
        self.on_cold: Callable[[], None] | None = None
        self.main_loop: ConsumeLoop | None = None
        self.started_at = time.time()
        self._signals = 0
        if logging.getLogger("conveyor.worker").isEnabledFor(logging.INFO):
            self.hooks.subscribe(LoggingListener())

    def _subscribe_task_handlers(self) -> None:
        """Call Task subclasses' on_success/on_failure/... only if a task has them."""
        from .task_handlers import TaskHandlers, overrides_handlers

        if any(overrides_handlers(task) for task in self.app.tasks.values()):
            self.hooks.subscribe(TaskHandlers(self.app))

    @functools.cached_property
    def observer(self) -> WorkerObserver:
        """Inspect/control and task counts (observe/observer.py)."""
        return WorkerObserver(self)

    # running --------------------------------------------------------------------------
    def start(self) -> int:
        """Run until shut down; returns the process exit code."""
        self.app.import_default_modules()
        from ..contrib.django.fixup import install as install_django_fixup

        install_django_fixup(self)  # DJANGO_SETTINGS_MODULE set: connections handled
        # What the configuration lacks fails here, at start, not mid-run.
        self._check_transport()
        _ = self.app.coordinator
        self._subscribe_task_handlers()
        observer = self.observer  # made now that the app's tasks are imported
        if self.metrics_port is not None:
            observer.serve_metrics(self.metrics_port, os.environ.get(MULTIPROC_ENV))
        self._print_banner()
        return self.pool_class(self).run()

    def loop_config(
        self,
        revocations: RevocationCache,
        watchers: Sequence[AttemptWatcher] = (),
        *,
        stop: threading.Event | None = None,
        max_tasks: int | None = None,
    ) -> LoopConfig:
        """The one configuration of this worker's consume loops; a pool adds how it
        watches attempts (and a prefork child its own stop event and task budget)."""
        from .loop import LoopConfig

        return LoopConfig(
            queues=self.queues,
            hostname=self.hostname,
            hooks=self.hooks,
            stop=stop if stop is not None else self.stop,
            prefetch=self.prefetch,
            max_tasks=max_tasks,
            revocations=revocations,
            watchers=watchers,
        )

    def _check_transport(self) -> None:
        """Every pool is served by a transport whose deliveries are leases or end with
        their connection (AMQP); one with neither is refused here, at start."""
        require_safe_deliveries(self.app.broker, f"the {self.pool} pool")
        if leases_of(self.app.broker) is None:
            logger.info("transport %s: deliveries end with their connection (no leases)",
                        type(self.app.broker).__name__)

    def autoscaler(self, pool: Scalable) -> Autoscaler | None:
        """The autoscaler of ``pool`` when --autoscale was given."""
        if self.autoscale is None:
            return None
        from .autoscale import Autoscaler

        keepalive = float(self.app.conf.worker_autoscale_keepalive)
        return Autoscaler(pool, self.autoscale, self.waiting, keepalive)

    def waiting(self) -> int:
        """Messages ready in this worker's queues (0 while the broker is unreachable)."""
        from .loop import TRANSIENT

        try:
            stats = self.app.broker.queues()
        except TRANSIENT:
            return 0
        return sum(q.ready for q in stats if q.name in self.queues)

    def on_signal(self, signum: int, frame: Any) -> None:
        """SIGTERM/SIGINT of an in-process pool: the first is a warm shutdown, the
        second a cold one."""
        self._signals += 1
        if self._signals == 1:
            logger.warning(
                "%s received: warm shutdown (send it again to stop now)",
                signal.Signals(signum).name,
            )
            self.stop.set()
            loop = self.main_loop
            if loop is not None and loop.in_fetch:
                from .loop import FetchInterrupted

                raise FetchInterrupted  # solo and idle: no task to finish, leave now
            if self.shutdown_timeout > 0:
                timer = threading.Timer(
                    self.shutdown_timeout, os.kill, (os.getpid(), signal.SIGTERM)
                )
                timer.daemon = True
                timer.start()
        elif self.on_cold is not None:
            logger.warning("cold shutdown: requeueing running tasks")
            self.on_cold()

    # reporting --------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "pid": os.getpid(),
            "pool": self.pool,
            "concurrency": self.concurrency if self.pool != "solo" else 1,
            "queues": self.queues,
            "started_at": self.started_at,
            "version": __version__,
            "heartbeat": time.time(),
        }

    def announce_ready(self) -> None:
        self.heartbeat()
        logger.info("%s ready.", self.hostname)
        self.hooks.worker_online(self.info())

    def heartbeat(self) -> None:
        info = self.info()
        self.app.coordinator.announce_worker(self.hostname, info, self.heartbeat_ttl)
        self.hooks.worker_heartbeat(info)

    def retire(self) -> None:
        try:
            self.app.coordinator.retire_worker(self.hostname)
        except Exception as exc:  # broker gone: the heartbeat simply expires
            logger.debug("could not retire worker: %s", exc)
        self.hooks.worker_offline(self.info())
        logger.info("%s stopped.", self.hostname)

    def _print_banner(self) -> None:
        app = self.app
        concurrency = 1 if self.pool == "solo" else self.concurrency
        lines = [
            f" -------------- {self.hostname} v{__version__}",
            f"--- conveyor -- {platform.platform(terse=True)} python {platform.python_version()}",
            f"- [config]  app:         {self.app_label}",
            f"- [config]  broker:      {masked(app.broker_url)}",
            f"- [config]  results:     {masked(app.backend_url)}",
            *([f"- [config]  coordinator: {masked(url)}"] if (url := app.coordinator_url) else []),
            f"- [config]  concurrency: {concurrency} ({self.pool})",
            f"- [queues]  {', '.join(self.queues)}",
            "- [tasks]",
            *(f"  . {name}" for name in sorted(app.tasks)),
            "",
        ]
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
