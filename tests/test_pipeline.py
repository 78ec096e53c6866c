"""The pipeline's pure parts: counters adding up, the main loop's clock, the worker's queue, drop summaries."""

from __future__ import annotations

import numpy as np

from ser_stream.counters import Counters
from ser_stream.pipeline.daemon import Beats
from ser_stream.pipeline.work import Heartbeat, StatusChange, UtteranceJob, WatchdogPing, WorkQueue
from ser_stream.pipeline.worker import DROP_SUMMARY_EVERY_S, DropBursts
from ser_stream.segmenter import Utterance


def test_counters_add_up_field_by_field():
    source = Counters(frames_captured=480, frames_lost=10, overflows=1, queue_drops=2, queue_depth=3)
    segmenter = Counters(utterances=4, utterances_dropped_short=1)
    worker = Counters(events_published=7, drops=1, queue_drops=5, queue_depth=2, interim_dropped=3)
    assert source + segmenter + worker == Counters(480, 10, 1, 4, 1, 7, 1, 7, 5, 3)
    assert list((source + worker).as_dict().items())[-3:] == [
        ("queue_drops", 7),
        ("queue_depth", 5),
        ("interim_dropped", 3),
    ]


def test_beats_ask_for_heartbeats_and_pings_on_their_own_periods():
    beats = Beats(heartbeat_s=1.0, watchdog_s=0.25, now=0.0)
    asked = {round(0.05 * tick, 2): beats.due(0.05 * tick) for tick in range(61)}  # a loop pass every 50 ms
    heartbeats = [t for t, items in asked.items() if any(isinstance(item, Heartbeat) for item in items)]
    pings = [t for t, items in asked.items() if any(isinstance(item, WatchdogPing) for item in items)]
    assert heartbeats == [1.0, 2.0, 3.0]
    assert pings == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0]
    assert Beats(heartbeat_s=1e10, watchdog_s=None, now=0.0).due(1e6) == []  # huge periods are just far away
    # A loop that stalled does not make up for the pings it missed in a burst.
    late = Beats(heartbeat_s=5.0, watchdog_s=0.25, now=0.0)
    late.due(0.0)
    assert [len(late.due(t)) for t in (10.0, 10.05, 10.1, 10.2)] == [2, 0, 0, 1]


def _job(start_s: float) -> UtteranceJob:
    start = int(start_s * 16000)
    utterance = Utterance(np.zeros(16000, np.int16), start, start + 16000, 16000, start + 16000, False)
    return UtteranceJob(utterance, 0.0, number=int(start_s))


def test_the_work_queue_evicts_the_oldest_utterance_and_lets_pulses_jump_it_once():
    work = WorkQueue(utterance_limit=2)
    first, second, third = _job(1.0), _job(3.0), _job(5.0)
    assert work.put_evicting(first) == [] and work.put_evicting(StatusChange("started")) == []
    assert work.put_evicting(second) == []
    assert work.put_evicting(third) == [first]  # the oldest waiting utterance goes, never a status
    for pulse in (Heartbeat(), WatchdogPing(), Heartbeat(), WatchdogPing()):
        assert work.put_evicting(pulse) == []
    assert [work.get() for _ in range(work.qsize())] == [
        WatchdogPing(),
        Heartbeat(),
        StatusChange("started"),
        second,
        third,
    ]
    assert work.unfinished_tasks == 5


def test_drops_are_summed_up_per_burst():
    bursts = DropBursts()
    assert bursts.end() is None
    assert bursts.dropped((1.0, 2.0), now=0.0) is None
    assert bursts.end() == "worker behind: dropped utterance 1.00–2.00 s"
    for second in range(3):
        assert bursts.dropped((10.0 + second, 10.5 + second), now=second) is None
    assert bursts.end() == "worker behind: dropped 3 utterances between 10.00 and 12.50 s"
    # A burst that goes on is summed up every DROP_SUMMARY_EVERY_S meanwhile.
    assert bursts.dropped((20.0, 21.0), now=100.0) is None
    assert bursts.dropped((22.0, 23.0), now=100.0 + DROP_SUMMARY_EVERY_S) == (
        "worker behind: dropped 2 utterances between 20.00 and 23.00 s"
    )
    assert bursts.end() is None
