"""The adapters' imports are taken out of the garbage collector's way once they are loaded."""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Iterator

import pytest

from onboarding import services


@pytest.fixture
def frozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_objects_are_frozen_after_new_imports_and_only_then(
    frozen: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_modules_when_frozen", 0)
    assert services.freeze_imports() is True
    after_first = gc.get_freeze_count()
    assert after_first > 0
    assert services.freeze_imports() is False  # nothing imported since: nothing more frozen
    # At most as many: a frozen object that another thread lets go of meanwhile leaves the count.
    assert gc.get_freeze_count() <= after_first
    monkeypatch.setitem(sys.modules, "lazily_loaded_sdk", types.ModuleType("lazily_loaded_sdk"))
    keep = [object() for _ in range(10)] + [[] for _ in range(10)]  # tracked objects made meanwhile
    assert services.freeze_imports() is True
    assert gc.get_freeze_count() > after_first
    assert keep
