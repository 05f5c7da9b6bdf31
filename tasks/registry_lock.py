"""A promotion lock in the MLflow model registry, so concurrent runs move aliases one at a time.

MLflow has no compare-and-set for aliases: `set_registered_model_alias` is an unconditional
upsert, and tags are upserts too, so "write a tag, read it back" is not mutual exclusion. The one
operation every registry backend (SQL stores and the REST server in front of them) makes atomic is
`create_registered_model(name)`: a unique constraint lets exactly one caller create a name, the
others get RESOURCE_ALREADY_EXISTS. The lock is therefore a sibling registered model
`<model>.promotion-lock`, created to acquire and hard-deleted to release. It carries a random
token (to tell our lock from a successor's) and an expiry time, so a lock left by a crashed run
is broken after `ttl_s` instead of blocking promotions for ever.

Whoever holds the lock reads @champion, decides, and moves the alias; right before the write it
checks that it still holds the lock (fencing), and afterwards reads the alias back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".promotion-lock"


class LockTimeout(RuntimeError):
    """The promotion lock could not be acquired, or was lost before the alias write."""


def lock_name(model_name: str) -> str:
    return f"{model_name}{LOCK_SUFFIX}"


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


class RegistryLock:
    def __init__(self, client: Any, model_name: str, ttl_s: float = 900.0,
                 timeout_s: float = 300.0, poll_s: float = 0.2) -> None:
        self.client = client
        self.name = lock_name(model_name)
        self.ttl_s, self.timeout_s, self.poll_s = ttl_s, timeout_s, poll_s
        self.token: str | None = None
        self.waited_s = 0.0

    def acquire(self) -> str:
        from mlflow.exceptions import MlflowException

        token = uuid.uuid4().hex
        start = time.monotonic()
        while True:
            try:
                self.client.create_registered_model(
                    self.name,
                    tags={"lock.token": token,
                          "lock.owner": f"{socket.gethostname()}:{os.getpid()}",
                          "lock.expires_at": f"{time.time() + self.ttl_s:.3f}"},
                    description="Promotion lock held by a training run while it moves aliases "
                                "(tasks/registry_lock.py). Deleted on release; expires by itself.")
                self.token = token
                self.waited_s = time.monotonic() - start
                return token
            except MlflowException as exc:
                # ALREADY_EXISTS: someone holds it. DOES_NOT_EXIST: the store hit the unique
                # constraint, then the holder released before the store re-read the row.
                if _error_code(exc) not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                    raise
            self._break_if_expired()
            if time.monotonic() - start > self.timeout_s:
                raise LockTimeout(f"could not acquire the registry lock {self.name!r} within "
                                  f"{self.timeout_s:g}s (another run is promoting; if none is, "
                                  f"delete that registered model)")
            time.sleep(self.poll_s * (0.5 + random.random()))  # jittered back-off

    def _read(self) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).tags)
        except MlflowException:
            return None

    def _break_if_expired(self) -> None:
        from mlflow.exceptions import MlflowException

        tags = self._read()
        if tags is None or float(tags.get("lock.expires_at", "inf")) >= time.time():
            return
        # Re-read right before deleting, so we only delete the expired lock we looked at.
        again = self._read()
        if again is not None and again.get("lock.token") == tags.get("lock.token"):
            log.warning("register: breaking an expired promotion lock held by %s",
                        tags.get("lock.owner", "?"))
            with contextlib.suppress(MlflowException):
                self.client.delete_registered_model(self.name)

    def still_held(self) -> bool:
        tags = self._read()
        return (tags is not None and self.token is not None and tags.get("lock.token") == self.token
                and float(tags.get("lock.expires_at", "inf")) > time.time())

    def release(self) -> None:
        from mlflow.exceptions import MlflowException

        if self.token is not None and (self._read() or {}).get("lock.token") == self.token:
            with contextlib.suppress(MlflowException):
                self.client.delete_registered_model(self.name)
        self.token = None

    @contextlib.contextmanager
    def held(self) -> Iterator[RegistryLock]:
        self.acquire()
        try:
            yield self
        finally:
            self.release()
