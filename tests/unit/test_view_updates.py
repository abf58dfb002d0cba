"""The engine's view updates reach the event loop that serves the view in order, and no
more than a few wait there at a time: the engine waits for the loop rather than piling up
decoded states (hub.worker.app.PostToLoop)."""

from __future__ import annotations

import asyncio
import threading
import time

from hub.reference import load_reference
from hub.worker.app import PostToLoop
from hub.worker.figures import LocalView

CALENDAR = load_reference().calendar


class Recording(LocalView):
    """A view that records what it was given (the updates here are plain numbers)."""

    applied: list[object]

    def replace(self, before: object, after: object) -> None:
        self.applied.append(after)


def test_the_engine_waits_for_the_loop_once_a_few_updates_are_pending() -> None:
    views: list[Recording] = []

    def new_view() -> Recording:
        view = Recording(CALENDAR)
        view.applied = []
        views.append(view)
        return view

    sink = PostToLoop(new_view)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sink.loop = loop
    busy = threading.Event()
    loop.call_soon_threadsafe(busy.wait)  # the loop is busy serving something else
    try:
        started = time.monotonic()
        for n in range(PostToLoop.MAX_PENDING):
            sink.replace([(None, n)])  # type: ignore[list-item]
        assert time.monotonic() - started < 1.0  # room for these: no wait

        waited: list[float] = []

        def one_more() -> None:
            began = time.monotonic()
            sink.replace([(None, PostToLoop.MAX_PENDING)])  # type: ignore[list-item]
            waited.append(time.monotonic() - began)

        engine = threading.Thread(target=one_more)
        engine.start()
        time.sleep(0.5)
        assert engine.is_alive()  # waiting for the loop
        busy.set()
        engine.join(5)
        assert waited and 0.4 < waited[0] < PostToLoop.PENDING_WAIT_S
        deadline = time.monotonic() + 5
        while len(views[0].applied) <= PostToLoop.MAX_PENDING and time.monotonic() < deadline:
            time.sleep(0.01)
        assert views[0].applied == list(range(PostToLoop.MAX_PENDING + 1))  # all, in order
    finally:
        busy.set()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
