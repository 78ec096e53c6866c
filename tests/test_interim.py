"""Speaking while it listens: speech start and end, interim results of the open utterance, then its final result."""

from __future__ import annotations

import io
import json
import logging
import signal
import time
from itertools import groupby

import numpy as np
import pytest
import soundfile

from ser_stream.capture import IDLE_BLOCKS, FileSource, MicSource
from ser_stream.events import validator_for
from ser_stream.features import GrowingFeatures, extractor_for
from ser_stream.model import Classifier, load_bundle
from ser_stream.pipeline import Daemon
from ser_stream.pipeline.daemon import Cadence
from ser_stream.publisher import Publisher
from ser_stream.settings import RunSettings, from_keys
from testkit.live import (
    MONOLOGUE_CODES,
    JsonPrinter,
    Subscriber,
    build_monologues,
    cli_executable,
    clip_path,
    free_endpoint,
    start_daemon,
    wait_until,
)
from tests.conftest import SHIPPED_MODEL

#: An interim result is taken at the first block at or after each interim_ms of the utterance: a VAD
#: frame late at most.  Its end is trimmed like a final's, to 100 ms after the last voiced frame,
#: which the hangover (the utterance is still open) puts less than 0.5 s back.
FRAME_S = 0.03
TRIM_S = 0.5


def stream_through_daemon(path, *flags: str, cli_topics: tuple[str, ...] = ()) -> tuple[list, list[dict]]:
    """Stream ``path`` with --no-realtime: (what one subscriber received, what the daemon printed).

    The subscriber subscribes to every topic (a SUB socket here: (topic, event) pairs), or runs as
    `ser-stream subscribe --topic T ...` for ``cli_topics`` (its events).  The daemon waits for it.
    """
    endpoint = free_endpoint()
    if cli_topics:
        topics = [word for topic in cli_topics for word in ("--topic", topic)]
        subscriber = JsonPrinter([cli_executable(), "subscribe", endpoint, *topics])
    else:
        subscriber = Subscriber(endpoint)
    try:
        daemon = start_daemon(
            *("--source", str(path), "--no-realtime", "--wait-subscriber", "20"), *flags, endpoint=endpoint
        )
        stdout, stderr = daemon.communicate(timeout=120)
        assert daemon.returncode == 0 and "Traceback" not in stderr, stderr
        printed = [json.loads(line) for line in stdout.splitlines()]
        if cli_topics:
            wanted = sum(_topic(event) in cli_topics for event in printed)
            wait_until(lambda: len(subscriber.events()) >= wanted, 10, f"{wanted} events at `subscribe`")
        else:
            wait_until(lambda: any(e["state"] == "stopping" for e in subscriber.of("status")), 10, "the last status")
    finally:
        received = subscriber.stop(signal.SIGINT) if cli_topics else subscriber.close()
    return (received if cli_topics else subscriber.messages), printed


def _topic(event: dict) -> str:
    """The topic a printed event went out on (--print writes the payload alone)."""
    kind = event["schema"].split(".")[1].split("/")[0]
    return "interim" if event.get("final") is False else kind


def comparable(event: dict) -> dict:
    """An event without what differs between two runs of one stream (sending order, clocks)."""
    return {key: value for key, value in event.items() if key not in ("seq", "timestamp", "latency_ms")}


@pytest.mark.slow
def test_a_long_utterance_gives_start_interims_end_and_final_in_seq_order(ravdess, tmp_path):
    stream = tmp_path / "monologues.wav"
    bounds = build_monologues(ravdess, stream)
    assert all(end - start > 7.0 for start, end in bounds)
    messages, printed = stream_through_daemon(stream)
    assert [event for _, event in messages] == printed

    for topic, event in messages:
        validator_for(topic).validate(event)
    seqs = [event["seq"] for _, event in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing lost, in order

    utterances = [(topic, event) for topic, event in messages if "utterance" in event]
    grouped = [list(group) for _, group in groupby(utterances, key=lambda item: item[1]["utterance"])]
    assert [group[0][1]["utterance"] for group in grouped] == list(range(1, len(grouped) + 1))  # never interleaved
    classified = []
    for (start_topic, start), *rest in grouped:
        assert (start_topic, start["state"]) == ("speech", "start")  # first, whatever comes after
        end_at = next(i for i, (topic, event) in enumerate(rest) if topic == "speech")
        interims, (_, end), after = rest[:end_at], rest[end_at], rest[end_at + 1 :]
        assert end["state"] == "end" and end["cut"] is False
        if not end["classified"]:  # speech shorter than min_utterance_ms: no interim or final result
            assert not interims and not after and end["duration_s"] < 0.5
            continue
        [(final_topic, final)] = after
        assert final_topic == "emotion" and final["final"] is True
        assert (final["start_s"], final["end_s"]) == (end["start_s"], end["end_s"])
        # An interim result every second of the utterance, of all of it so far.
        assert len(interims) >= int(end["end_s"] - start["start_s"]) - 1 >= 4
        assert all(topic == "interim" and event["final"] is False for topic, event in interims)
        assert all(event["start_s"] == start["start_s"] for _, event in interims)
        # The k-th is taken k seconds into the utterance (to the block), its end trimmed to the speech.
        ends = [event["end_s"] - start["start_s"] for _, event in interims]
        assert all(k - TRIM_S <= end_s <= k + FRAME_S for k, end_s in enumerate(ends, 1)), ends
        assert interims[-1][1]["end_s"] < end["end_s"]
        classified.append((start["start_s"], end["end_s"]))
    assert len(classified) == len(bounds)  # each monologue is one utterance
    for (start_s, end_s), (speech_start, speech_end) in zip(classified, bounds, strict=True):
        assert abs(start_s - speech_start) <= 0.3 and speech_start + 5 < end_s <= speech_end + 0.3


@pytest.mark.slow
def test_final_results_are_the_same_with_and_without_interim_results(ravdess, tmp_path):
    stream = tmp_path / "monologues.wav"
    build_monologues(ravdess, stream)
    # `ser-stream subscribe --topic speech --topic interim` gets exactly those two topics: ZeroMQ matches
    # topics by prefix, and none of the five begins another.
    received, with_interims = stream_through_daemon(stream, cli_topics=("speech", "interim"))
    assert received == [event for event in with_interims if _topic(event) in ("speech", "interim")]
    assert {_topic(event) for event in received} == {"speech", "interim"}
    _, without = stream_through_daemon(stream, "--interim-ms", "0")
    assert not [event for event in without if event.get("final") is False]
    for topic in ("emotion", "speech"):
        finals = [comparable(event) for event in with_interims if _topic(event) == topic]
        assert finals == [comparable(event) for event in without if _topic(event) == topic] and len(finals) >= 2


# -- the worker: interim work goes first when it lags ---------------------------------------------


class _SlowClassifier(Classifier):
    """Every classification (final or interim) takes 0.2 s: a worker far slower than the audio."""

    def predict(self, features, adapter=None):  # the worker's last step with each utterance, final or interim
        time.sleep(0.2)  # the slowness under test
        return super().predict(features, adapter)


def test_a_lagging_worker_drops_waiting_interim_work_first(ravdess, tmp_path, caplog):
    stream = tmp_path / "monologues.wav"
    build_monologues(ravdess, stream)
    source = FileSource(stream, realtime=False)
    source.live = True  # a microphone's policy at file speed: nothing waits for the worker
    printed = io.StringIO()
    with Publisher(free_endpoint()) as publisher:
        settings = from_keys(RunSettings, {"print": True, "interim_ms": 300})
        daemon = Daemon(source, _SlowClassifier(load_bundle(SHIPPED_MODEL)), publisher, settings, out=printed)
        with caplog.at_level(logging.WARNING, logger="ser_stream"):
            assert daemon.run() == 0
        counters = daemon.counters()
    events = [json.loads(line) for line in printed.getvalue().splitlines()]
    finals = [event for event in events if event.get("final") is True]
    interims = [event for event in events if event.get("final") is False]
    # Every final result, none dropped; most interim results dropped, and counted.
    assert counters.utterances == len(finals) == 2 and counters.queue_drops == 0
    assert counters.interim_dropped > 0 and counters.interim_dropped + len(interims) >= 40
    assert events[-1]["counters"]["interim_dropped"] == counters.interim_dropped
    summaries = [r.getMessage() for r in caplog.records if " interim result" in r.getMessage()]
    counted = [int(m.split()[3]) if m.split()[3].isdigit() else 1 for m in summaries]
    assert sum(counted) == counters.interim_dropped and len(summaries) < counters.interim_dropped
    # Still in order: no interim result after its utterance's end.
    for final in finals:
        number = final["utterance"]
        end = next(i for i, e in enumerate(events) if e.get("state") == "end" and e["utterance"] == number)
        assert all(i < end for i, e in enumerate(events) if e.get("final") is False and e["utterance"] == number)


# -- pure parts ------------------------------------------------------------------------------------


def test_the_cadence_is_every_interim_ms_of_stream_time_after_the_start():
    cadence = Cadence(16000)
    cadence.opened(start=8000, interim_ms=1000)
    due = [position for position in range(8000, 8000 + 5 * 16000, 480) if cadence.due(position)]
    assert [position - 8000 for position in due] == [16320, 32160, 48000, 64320]  # the first block at or after each
    cadence.opened(start=0, interim_ms=1000)
    assert not cadence.due(15999) and cadence.due(50000) and not cadence.due(63999) and cadence.due(64000)
    cadence.closed()
    assert not cadence.due(10**9)
    cadence.opened(start=0, interim_ms=0)  # off
    assert not cadence.due(10**9)


def _speech(ravdess, actor: int = 1) -> np.ndarray:
    clips = [soundfile.read(clip_path(ravdess, code, actor), dtype="float32")[0] for code in MONOLOGUE_CODES]
    return np.concatenate(clips)


def test_growing_features_are_those_of_the_utterance_so_far(ravdess):
    extractor = extractor_for(load_bundle(SHIPPED_MODEL).feature_params)
    speech = _speech(ravdess)[: 9 * 16000]
    growing = GrowingFeatures(extractor)
    # Shorter than a frame, not a multiple of the hop, whole seconds: each call as the extractor says.
    for end in (300, 1024, 1500, 2048, 2049, 5000, 16000, 16001, 40000, 40000, 90000, speech.size):
        np.testing.assert_allclose(growing(speech[:end]), extractor(speech[:end]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="only grows"):
        growing(speech[:1000])


def test_an_interim_classification_is_a_classification_of_the_utterance_so_far(ravdess):
    classifier = Classifier(load_bundle(SHIPPED_MODEL))
    speech = _speech(ravdess, actor=5)
    growing = classifier.growing()
    for seconds in range(1, int(speech.size / 16000)):
        so_far = speech[: seconds * 16000]
        interim, scratch = growing.classify(so_far, 16000), classifier.classify(so_far, 16000)
        assert interim.label == scratch.label
        for label, probability in scratch.probabilities.items():
            assert interim.probabilities[label] == pytest.approx(probability, abs=1e-6)
    # At another rate than the model's, each call is a classification from scratch.
    resampled = classifier.growing()
    at_48k = np.repeat(speech[: 2 * 16000], 3)
    assert resampled.classify(at_48k, 48000) == classifier.classify(at_48k, 48000)


# -- idle: coarser blocks while nobody speaks --------------------------------------------------------


def test_an_idle_file_source_reads_coarser_blocks(ravdess):
    source = FileSource(clip_path(ravdess, 2, 1), realtime=False)
    source.start()
    sizes, offsets = [], []
    for idle in (False, True, True, False):
        source.idle = idle
        block = source.read(1.0)
        sizes.append(block.samples.size)
        offsets.append(block.start)
    assert sizes == [480, 480 * IDLE_BLOCKS, 480 * IDLE_BLOCKS, 480]
    assert offsets == [0, 480, 480 * (1 + IDLE_BLOCKS), 480 * (1 + 2 * IDLE_BLOCKS)]  # contiguous


@pytest.mark.slow
def test_an_idle_microphone_reads_coarser_blocks(virtual_mic):
    source = MicSource(virtual_mic.device)
    source.start()
    try:
        assert source.read(15.0) is not None  # audio flows
        source.idle = True
        blocks = [source.read(5.0) for _ in range(20)]
        source.idle = False
        later = [source.read(5.0) for _ in range(20)]
    finally:
        source.stop()
    sizes = [block.samples.size for block in blocks + later]
    assert 480 * IDLE_BLOCKS in sizes[:20] and sizes[-5:] == [480] * 5  # the capture thread follows the hint
    assert all(b.start == a.start + a.samples.size for a, b in zip(blocks + later, (blocks + later)[1:], strict=False))
