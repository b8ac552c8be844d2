"""A family's lazy catalog is complete for every thread that reads it (the language server reads it from
its request thread while the checker thread loads it; one of them used to see a half-registered family)."""

from __future__ import annotations

import threading
import time

from flowdsl.layers import catalog
from flowdsl.layers.registry import Family


def test_a_thread_reading_a_catalog_being_loaded_waits_for_all_of_it(monkeypatch):
    family = Family("net", catalog="flowdsl.layers.catalog:NET_SPECS")
    expected = sorted(cls.name for cls in catalog.NET_SPECS)
    slow_register, started = family.register, threading.Event()

    def register(cls):  # loading takes a while: the other thread arrives in the middle of it
        started.set()
        time.sleep(0.01)
        return slow_register(cls)

    monkeypatch.setattr(family, "register", register)
    seen: list[list[str]] = []
    loader = threading.Thread(target=lambda: seen.append(family.names()))
    loader.start()
    started.wait(5)
    reader = family.names()  # while the loader is still registering
    loader.join(5)
    assert reader == expected and seen == [expected]
