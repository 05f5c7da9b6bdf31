import time
from pathlib import Path

import pytest

from tasks.registry_lock import LockTimeout, RegistryLock, lock_name


@pytest.fixture(scope="module")
def client(tmp_path_factory):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("registry") / "mlflow.db"
    return MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")


def _exists(client, name: str) -> bool:  # type: ignore[no-untyped-def]
    return any(m.name == name for m in client.search_registered_models())


def test_second_holder_waits_then_gets_it_after_release(client) -> None:  # type: ignore[no-untyped-def]
    a = RegistryLock(client, "m1", timeout_s=0.5, poll_s=0.05)
    b = RegistryLock(client, "m1", timeout_s=0.5, poll_s=0.05)
    with a.held():
        assert a.still_held() and _exists(client, lock_name("m1"))
        with pytest.raises(LockTimeout, match="m1.promotion-lock"):
            b.acquire()
    assert not _exists(client, lock_name("m1"))
    with b.held():
        assert b.still_held() and not a.still_held()


def test_expired_lock_of_a_crashed_run_is_broken(client) -> None:  # type: ignore[no-untyped-def]
    crashed = RegistryLock(client, "m2", ttl_s=0.3)
    crashed.acquire()                              # never released: the process "died"
    time.sleep(0.4)
    assert not crashed.still_held()                # expired: fencing refuses its late write
    successor = RegistryLock(client, "m2", timeout_s=5, poll_s=0.05)
    with successor.held():
        assert successor.still_held()
    crashed.release()                              # a late release does not delete others' locks
    assert not _exists(client, lock_name("m2"))


def test_release_leaves_a_successors_lock_alone(client) -> None:  # type: ignore[no-untyped-def]
    old = RegistryLock(client, "m3", ttl_s=0.2)
    old.acquire()
    time.sleep(0.3)
    new = RegistryLock(client, "m3", timeout_s=5, poll_s=0.05)
    new.acquire()
    old.release()
    assert new.still_held()
    new.release()
