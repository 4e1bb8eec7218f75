"""The garbage collector tuned for a long-running server."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from emcp.collector import OLDER_EVERY, freeze_startup_objects, tune_collector


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_thresholds_and_freeze() -> None:
    tune_collector(0)
    default = gc.get_threshold()
    tune_collector(50_000)
    assert gc.get_threshold() == (50_000, *OLDER_EVERY)
    assert default != gc.get_threshold()
    survivor = [object()]  # a container alive through the freeze
    freeze_startup_objects()
    assert gc.get_freeze_count() > 0
    assert all(survivor is not tracked for tracked in gc.get_objects())
