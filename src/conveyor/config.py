"""Settings: Celery's names, the old upper-case aliases, and conveyor's own.

``app.conf`` is a mapping with attribute access. Unknown names are kept (extensions may
read them) but warned about, naming the closest known setting, because a typo in a
setting name otherwise fails silently (Celery ignores it).
"""

from __future__ import annotations

import difflib
import importlib
import os
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from .exceptions import ConfigurationError

__all__ = ["DEFAULTS", "NOT_SUPPORTED", "OLD_NAMES", "Settings"]

DEFAULTS: dict[str, Any] = {
    # where messages and results live
    "broker_url": None,
    "result_backend": None,
    # where workers share state (leases, limits, revocations...): None = the broker's store
    "coordinator_url": None,
    "coordinator_transport_options": {},  # as broker_transport_options, for coordinator_url
    # read by amqp:// (Celery's meaning: retry the first connection); redis and sqlite
    # workers always wait for the broker at start
    "broker_connection_retry_on_startup": True,
    # amqp:// (Celery's names and defaults): heartbeat seconds (0: off), connect timeout,
    # reconnection attempts (None: forever)
    "broker_heartbeat": 120.0,
    "broker_connection_timeout": 4.0,
    "broker_connection_max_retries": 100,
    "broker_transport_options": {},
    # TLS for rediss:// (Celery's shape: {"ssl_cert_reqs": ssl.CERT_REQUIRED,
    # "ssl_ca_certs": ..., "ssl_certfile": ..., "ssl_keyfile": ...}).
    "broker_use_ssl": None,
    "redis_backend_use_ssl": None,
    # Larger messages fail at send and are dead-lettered on receipt. 100 MB: well
    # under Redis's 512 MB bulk limit and SQLite's 1 GB blob limit; a message that
    # large is nearly always data that belongs in storage, with its key as argument.
    "broker_max_message_size": 100 * 1024 * 1024,
    "result_backend_transport_options": {},
    "result_expires": 86400.0,
    "result_extended": False,
    "result_serializer": "json",
    "result_accept_content": None,
    # messages
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_default_queue": "celery",
    "task_default_priority": 0,
    "task_routes": None,
    "task_create_missing_queues": True,
    "task_protocol": 2,
    # signed messages (signing.py; Celery's names)
    "security_key": None,
    "security_key_password": None,
    "security_certificate": None,
    "security_cert_store": None,
    "security_digest": "sha256",
    "security_serializer": "json",
    # task behaviour
    "task_track_started": False,
    "task_ignore_result": False,
    "task_acks_late": True,
    "task_acks_on_failure_or_timeout": True,
    "task_reject_on_worker_lost": True,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_default_rate_limit": None,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_store_eager_result": False,
    "task_annotations": None,
    "task_max_deliveries": 5,
    "task_idempotency_window": 3600.0,
    # worker
    "worker_concurrency": None,
    "worker_pool": "prefork",
    "worker_prefetch_multiplier": 4,
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,
    "worker_hijack_root_logger": True,
    "worker_log_format": None,
    "worker_task_log_format": None,
    "worker_send_task_events": False,
    "event_stream_max_len": 100_000,  # conveyor: events the store keeps (-E)
    # the dashboard: tasks its history keeps; hide argument values (True, or kwarg names)
    "dashboard_max_tasks": 1_000_000,
    "dashboard_mask_args": False,
    "dashboard_token": None,
    "worker_shutdown_timeout": 30.0,
    "worker_lease_seconds": 10.0,
    "worker_prefetch_release_seconds": 1.0,
    "worker_heartbeat_seconds": 2.0,
    "worker_revoke_expires": 10800.0,
    # conveyor: --autoscale shrinks after this long idle (Celery's AUTOSCALE_KEEPALIVE)
    "worker_autoscale_keepalive": 30.0,
    # modules and time
    "imports": (),
    "include": (),
    "timezone": "UTC",
    "enable_utc": True,
    "beat_schedule": {},
    "beat_max_loop_interval": 5.0,
    "beat_lease_seconds": 10.0,
    # conveyor only
    "redis_key_prefix": "conveyor",
}

# Celery names conveyor accepts but does not act on (beyond their default): setting one to
# anything else warns "not supported by conveyor", with what conveyor does instead,
# rather than being silently ignored. tests/unit/test_settings_read.py checks that every
# other name in DEFAULTS is read somewhere.
NOT_SUPPORTED: dict[str, str] = {
    "result_extended": "results keep the task name, retries, worker and parent, never the "
    "arguments",
    "result_serializer": "results are always stored as JSON (msgspec)",
    "result_accept_content": "results are always stored as JSON (msgspec)",
    "task_create_missing_queues": "a queue always exists once a message is sent to it",
    "task_protocol": "messages use conveyor's own versioned envelope",
    "task_store_eager_result": "eager calls (task_always_eager) never store results",
    "task_annotations": "set options on the task itself (@app.task(rate_limit=...)) or at "
    "run time (app.control.rate_limit)",
}

# The names Celery 3 used, still read by config_from_object (Celery's own table, trimmed
# to the settings conveyor knows).
OLD_NAMES: dict[str, str] = {
    "BROKER_URL": "broker_url",
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options",
    "CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS": "result_backend_transport_options",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_RESULT_EXPIRES": "result_expires",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "BROKER_USE_SSL": "broker_use_ssl",
    "CELERY_REDIS_BACKEND_USE_SSL": "redis_backend_use_ssl",
    "CELERY_SECURITY_KEY": "security_key",
    "CELERY_SECURITY_CERTIFICATE": "security_certificate",
    "CELERY_SECURITY_CERT_STORE": "security_cert_store",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_DEFAULT_PRIORITY": "task_default_priority",
    "CELERY_ROUTES": "task_routes",
    "CELERY_CREATE_MISSING_QUEUES": "task_create_missing_queues",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERY_ANNOTATIONS": "task_annotations",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_POOL": "worker_pool",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_MAX_MEMORY_PER_CHILD": "worker_max_memory_per_child",
    "CELERYD_HIJACK_ROOT_LOGGER": "worker_hijack_root_logger",
    "CELERYD_LOG_FORMAT": "worker_log_format",
    "CELERYD_TASK_LOG_FORMAT": "worker_task_log_format",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERY_IMPORTS": "imports",
    "CELERY_INCLUDE": "include",
    "CELERY_TIMEZONE": "timezone",
    "CELERY_ENABLE_UTC": "enable_utc",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERYBEAT_MAX_LOOP_INTERVAL": "beat_max_loop_interval",
}

# Environment variables read when the app is configured; they win over defaults but
# not over what the code sets explicitly. Celery's own two are read as well (after
# conveyor's), so a deployment that sets them keeps its broker.
ENVIRONMENT: dict[str, str] = {
    "CONVEYOR_BROKER_URL": "broker_url",
    "CONVEYOR_RESULT_BACKEND": "result_backend",
    "CELERY_BROKER_URL": "broker_url",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CONVEYOR_COORDINATOR_URL": "coordinator_url",
    "AUTOSCALE_KEEPALIVE": "worker_autoscale_keepalive",  # Celery's variable
}

# Broker settings of Celery's that conveyor does not read: setting one is an error (it
# names broker_url), never a silent fall back to the embedded broker.
UNREAD_BROKER_SETTINGS = frozenset(
    {
        "broker_host", "broker_port", "broker_user", "broker_password", "broker_vhost",
        "broker_transport", "broker_read_url", "broker_write_url",
    }
)  # fmt: skip
_CELERY_PREFIX = "CELERY_"


class Settings(MutableMapping[str, Any]):
    """The app's configuration: a dict of lower-case setting names."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(DEFAULTS)
        self._changed: set[str] = set()
        if initial:
            self.update(initial)

    # mapping protocol -------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        name = _canonical(key)
        if name in UNREAD_BROKER_SETTINGS:
            raise ConfigurationError(
                f"setting {key!r} is not read by conveyor: give the whole broker as "
                "broker_url (e.g. 'redis://user:password@host:6379/0')"
            )
        if name not in DEFAULTS:
            _warn_unknown(name)
        elif name in NOT_SUPPORTED and value != DEFAULTS[name]:
            warnings.warn(
                f"setting {key!r} is not supported by conveyor: {NOT_SUPPORTED[name]}",
                UserWarning,
                stacklevel=3,
            )
        self._values[name] = value
        self._changed.add(name)

    def __delitem__(self, key: str) -> None:
        name = _canonical(key)
        if name in DEFAULTS:
            self._values[name] = DEFAULTS[name]
            self._changed.discard(name)
        else:
            del self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    # attribute access, as Celery's app.conf allows ------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[_canonical(name)]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    @property
    def raw(self) -> dict[str, Any]:
        """The settings as a plain dict (read-only by convention): hot paths read it
        directly instead of paying for attribute lookups."""
        return self._values

    def is_set(self, name: str) -> bool:
        """True when the user set ``name`` (not just the default)."""
        return _canonical(name) in self._changed

    def apply_environment(self, environ: Mapping[str, str] = os.environ) -> None:
        applied: set[str] = set()
        for variable, name in ENVIRONMENT.items():  # conveyor's names first: they win
            if environ.get(variable) and not self.is_set(name) and name not in applied:
                self._values[name] = environ[variable]
                applied.add(name)

    def from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Read settings from a module, a dotted module name, ``"module:attribute"``
        (``"django.conf:settings"``), a class or a mapping.

        Reads lower-case Celery names, old upper-case names, and with ``namespace="CELERY"``
        Django-style ``CELERY_BROKER_URL`` names.
        """
        if isinstance(obj, str):
            module, _, attribute = obj.partition(":")
            obj = importlib.import_module(module)
            if attribute:
                obj = getattr(obj, attribute)
        items = obj.items() if isinstance(obj, Mapping) else _public_attributes(obj)
        prefix = f"{namespace}_" if namespace else None
        for key, value in items:
            name = _setting_name(key, prefix)
            if name is not None:
                self[name] = value


def _setting_name(key: str, prefix: str | None) -> str | None:
    """The setting a name in a config object sets (old and new names both), or None
    when it is not a setting (another upper-case constant of the module)."""
    if prefix is not None:
        return key[len(prefix) :].lower() if key.startswith(prefix) else None
    if not key.isupper() or key in OLD_NAMES:
        return key
    if key.lower() in UNREAD_BROKER_SETTINGS:  # Celery 3's BROKER_HOST ...: refused
        return key.lower()
    if key.startswith(_CELERY_PREFIX):
        # CELERY_BROKER_URL in a plain module (Django style without the namespace):
        # Celery ignores it and falls back to amqp://localhost silently; conveyor reads
        # it as broker_url (and warns about an unknown one).
        return key[len(_CELERY_PREFIX) :].lower()
    return None


def _public_attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    for key in dir(obj):
        if not key.startswith("_"):
            yield key, getattr(obj, key)


def _canonical(name: str) -> str:
    return OLD_NAMES.get(name, name)


def _warn_unknown(name: str) -> None:
    close = difflib.get_close_matches(name, DEFAULTS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    warnings.warn(f"unknown setting {name!r}{hint}", UserWarning, stacklevel=4)
