"""The segmenter says when it opens and closes an utterance, and copies the open one on request."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from ser_stream.segmenter import Segmenter, SegmenterConfig, SpeechEnded, SpeechEvent, SpeechStarted
from tests.test_segmenter import PIECES, speech_at, stream


def events_of(samples: np.ndarray, config: SegmenterConfig | None = None) -> tuple[list[SpeechEvent], Segmenter]:
    segmenter = Segmenter(config or SegmenterConfig())
    return segmenter.feed_events(samples) + segmenter.flush_events(), segmenter


def assert_alternate(events: list[SpeechEvent]) -> None:
    """Opened, closed, opened, closed …, each close after its open, in stream order."""
    assert [type(event) for event in events] == [SpeechStarted, SpeechEnded] * (len(events) // 2)
    for opened, closed in zip(events[::2], events[1::2], strict=True):
        assert opened.start <= closed.start <= closed.end <= closed.closed_at
        assert opened.start < opened.opened_at <= closed.closed_at
    assert all(a.opened_at <= b.opened_at for a, b in pairwise(events[::2]))


def describe(events: list[SpeechEvent]) -> list[tuple]:
    return [
        (event.start, event.opened_at)
        if isinstance(event, SpeechStarted)
        else (event.start, event.end, event.closed_at, event.cut, event.utterance is not None)
        for event in events
    ]


def test_each_utterance_is_opened_then_closed_with_what_was_emitted() -> None:
    samples, bursts = stream(16000, *PIECES, ("silence", 1.0))
    events, segmenter = events_of(samples)
    assert_alternate(events)
    assert len(events) == 2 * len(bursts)
    trigger = 120 * 16 + 480  # the trigger window and a frame
    for index, (start, _) in enumerate(bursts):
        opened, closed = events[2 * index], events[2 * index + 1]
        # Opened within the trigger window of the onset, from the onset minus the pre-roll.
        assert start < opened.opened_at <= start + trigger
        assert opened.start == closed.start == closed.utterance.start
        assert (closed.end, closed.closed_at, closed.cut) == (
            closed.utterance.end,
            closed.utterance.closed_at,
            False,
        )
    # feed and flush return the same utterances as the events carry.
    again = Segmenter()
    assert [u.start for u in again.feed(samples) + again.flush()] == [e.utterance.start for e in events[1::2]]
    assert segmenter.emitted == len(bursts)


def test_a_murmur_before_the_first_word_moves_only_the_emitted_start() -> None:
    config = SegmenterConfig(gate_db=25)
    murmur, loud = speech_at(0.6, 16000, -18, seed=2), speech_at(1.5, 16000, 10, seed=1)  # 28 dB apart
    zeros = np.zeros(16000, np.int16)
    events, _ = events_of(np.concatenate([zeros, murmur, loud, zeros]), config)
    opened, closed = events
    assert opened.start < zeros.size < closed.start == closed.utterance.start  # opened on the murmur


def test_a_too_short_utterance_is_opened_and_closed_with_nothing_emitted() -> None:
    config = SegmenterConfig(min_utterance_ms=1000)
    samples, _ = stream(16000, ("silence", 0.8), ("speech", 0.2), ("silence", 0.8))
    events, segmenter = events_of(samples, config)
    assert_alternate(events)
    assert len(events) == 2 and events[1].utterance is None and events[1].end > events[1].start
    assert (segmenter.emitted, segmenter.dropped_short) == (0, 1)


def test_each_window_of_a_cut_monologue_is_opened_and_closed() -> None:
    config = SegmenterConfig(max_utterance_ms=1000)
    samples, _ = stream(16000, ("silence", 1.0), ("speech", 3.3), ("silence", 1.0))
    events, _ = events_of(samples, config)
    assert_alternate(events)
    closes = events[1::2]
    assert [e.cut for e in closes] == [True, True, True, False]
    for closed, reopened in zip(closes, events[2::2], strict=False):
        # The next window opens where and when the last was cut.
        assert (reopened.start, reopened.opened_at) == (closed.end, closed.closed_at)


def test_a_window_cut_off_during_the_hangover_is_closed_empty() -> None:
    config = SegmenterConfig(max_utterance_ms=2000)
    samples, _ = stream(16000, ("silence", 1.0), ("speech", 1.55), ("silence", 1.0))
    events, _ = events_of(samples, config)
    assert_alternate(events)
    assert [(e.cut, e.utterance is not None) for e in events[1::2]] == [(True, True), (False, False)]
    assert events[3].end == events[3].start  # nothing in it


def test_flush_closes_the_open_utterance() -> None:
    samples, _ = stream(16000, ("silence", 1.0), ("speech", 1.0))
    segmenter = Segmenter()
    opened = segmenter.feed_events(samples)
    assert [type(e) for e in opened] == [SpeechStarted]
    closed = segmenter.flush_events(resume_at=100_000)
    assert [type(e) for e in closed] == [SpeechEnded] and closed[0].closed_at == samples.size
    assert segmenter.flush_events() == []


def test_random_chunks_give_the_same_events_as_the_whole_stream() -> None:
    config = SegmenterConfig(max_utterance_ms=1000, frame_ms=20)
    samples, _ = stream(16000, *PIECES, ("silence", 0.4), ("speech", 0.9))
    whole, _ = events_of(samples, config)
    rng = np.random.default_rng(3)
    for high in (7, 500, 60000):
        segmenter, chunked, offset = Segmenter(config), [], 0
        while offset < samples.size:
            size = int(rng.integers(0, high))
            chunked += segmenter.feed_events(samples[offset : offset + size])
            offset += size
        chunked += segmenter.flush_events()
        assert describe(chunked) == describe(whole)


def test_so_far_copies_the_open_utterance_as_it_would_close_now() -> None:
    config = SegmenterConfig()
    samples, [(start, _)] = stream(16000, ("silence", 1.0), ("speech", 2.5), ("silence", 1.0))
    segmenter = Segmenter(config)
    copies = []
    for offset in range(0, samples.size, 480):
        segmenter.feed(samples[offset : offset + 480])
        copies.append((segmenter.position, segmenter.so_far()))
    open_copies = [(position, copy) for position, copy in copies if copy is not None]
    assert open_copies, "never open"
    final = (Segmenter(config).feed(samples))[0]
    for position, copy in open_copies:
        np.testing.assert_array_equal(copy.samples, samples[copy.start : copy.end])
        assert not copy.samples.flags.writeable
        assert copy.start == final.start and copy.end <= copy.closed_at == position
        assert copy.end - copy.start >= config.min_utterance_ms * 16
    # It grows with the speech; before min_utterance_ms was heard, and in silence, there is nothing.
    ends = [copy.end for _, copy in open_copies]
    assert ends == sorted(ends) and ends[-1] == final.end
    first_open = next(i for i, (_, copy) in enumerate(copies) if copy is not None)
    assert copies[first_open][1].end - start < config.min_utterance_ms * 16 + 2 * 480
    assert copies[-1][1] is None and copies[0][1] is None


def test_so_far_is_never_longer_than_a_window() -> None:
    config = SegmenterConfig(max_utterance_ms=1000)
    samples, _ = stream(16000, ("silence", 1.0), ("speech", 3.3), ("silence", 1.0))
    segmenter = Segmenter(config)
    longest = 0
    for offset in range(0, samples.size, 480):
        segmenter.feed(samples[offset : offset + 480])
        if (copy := segmenter.so_far()) is not None:
            longest = max(longest, copy.samples.size)
    assert 0 < longest <= 16000


@pytest.mark.parametrize("floor", [0.0, 0.001])
def test_idle_while_nothing_can_open_an_utterance(floor: float) -> None:
    samples, [(start, _)] = stream(16000, ("silence", 1.0), ("speech", 1.0), ("silence", 1.5), floor=floor)
    segmenter = Segmenter()
    idle = []
    for offset in range(0, samples.size, 480):
        segmenter.feed(samples[offset : offset + 480])
        idle.append((segmenter.position, segmenter.idle, segmenter.in_speech))
    # Busy from the first voiced frame (before the utterance opens) until it has closed; webrtcvad
    # calls the first ~90 ms of a noise floor voiced while it adapts (a short utterance, dropped).
    first_busy = next(position for position, is_idle, _ in idle if not is_idle and position > 12000)
    assert start < first_busy <= start + 2 * 480
    assert all(is_idle for position, is_idle, _ in idle if 12000 < position <= start)
    assert not any(is_idle and in_speech for _, is_idle, in_speech in idle)
    assert idle[-1][1]  # idle again once it closed
