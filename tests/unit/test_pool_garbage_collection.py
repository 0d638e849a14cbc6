"""A pool process collects no garbage automatically while a batch runs, and the batch's cyclic garbage once it ends."""

from __future__ import annotations

import gc
import weakref

import pytest

from workers.consumer.dispatch import collected_after_the_batch


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a  # freed only by the collector
    return weakref.ref(a)


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_given_a_batch_when_it_runs_then_no_automatic_collection_and_its_cycles_are_collected_when_it_ends():
    with collected_after_the_batch():
        assert not gc.isenabled()
        node = _cycle()
        for _ in range(50_000):  # far past the youngest generation's threshold: nothing collects it
            _ = [[]]  # a container the collector tracks
        assert node() is not None
    assert gc.isenabled()
    assert node() is None


def test_given_a_batch_that_raises_when_it_ends_then_collection_is_back_on_and_its_cycles_collected():
    with pytest.raises(RuntimeError), collected_after_the_batch():
        node = _cycle()
        raise RuntimeError("the batch failed")
    assert gc.isenabled() and node() is None


def test_given_collection_turned_off_by_someone_else_when_a_batch_ends_then_it_stays_off_and_nothing_is_collected():
    gc.disable()
    with collected_after_the_batch():
        node = _cycle()
    assert not gc.isenabled() and node() is not None
    gc.collect()
