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
    made_meanwhile: list[object] = []  # a tracked object, in a generation the collector walks
    assert _collected(made_meanwhile)
    assert services.freeze_imports() is True
    # Frozen: in no generation the collector walks. (Not judged by the frozen count, which other
    # threads' objects leaving the frozen set can lower at the same time.)
    assert not _collected(made_meanwhile)


def _collected(obj: object) -> bool:
    """Whether a full collection would walk ``obj``: frozen objects are in none of the generations
    ``gc.get_objects`` lists."""
    return any(candidate is obj for candidate in gc.get_objects())
