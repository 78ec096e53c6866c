"""Audio sources: a microphone through PortAudio, or an audio file played back like one.

Both hand out int16 mono blocks tagged with their sample offset from the stream start, so
utterance times stay sample-accurate whatever the source. The microphone side follows
python-sounddevice's examples: the capture thread only copies into a bounded queue.

sounddevice is imported lazily: importing it initialises PortAudio (which enumerates every
ALSA device and contacts the sound server), and file sources must work without PortAudio.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
import soxr

from .audio import open_audio, read_frames, to_int16, warn_if_short
from .counters import Counters
from .errors import DeviceError, DeviceLostError, UserError

if TYPE_CHECKING:
    import sounddevice

#: Sample rate tried when the device refuses the requested one; webrtcvad accepts it too.
FALLBACK_RATE = 48000
#: A running stream that delivers nothing for this long is treated as lost (a hung driver or
#: server may block a read forever); blocks normally come every 10-30 ms.
STALL_S = 3.0
#: Delivered audio this far short of the clock is audio the input lost (see LossDetector).
LOSS_THRESHOLD_S = 0.25
#: Blocks between two checks for lost audio: losses are rare, and found at the next check.
LOSS_CHECK_BLOCKS = 10
#: How fast the loss detector's baseline follows slow changes (latency, the card's clock drift), per check.
_BASELINE_FOLLOW = 1 / 32
#: Blocks read at a time while the reader says it is idle (nobody speaking): each read wakes the
#: capture thread and the main loop, which is what an always-on device pays while nothing happens.
#: Two halve it; the segmenter may hear a first voiced frame one block later.
IDLE_BLOCKS = 2


class AudioBlock(NamedTuple):
    samples: np.ndarray  # int16 mono, 1-D
    start: int  # sample offset of samples[0] from stream start
    captured_at: float  # time.monotonic() when the block's last sample was captured (file: when due / read)


class LossDetector:
    """Finds audio an input lost without saying so, from the clock.

    A starved capture thread makes the sound system drop audio, and not every backend flags it:
    ALSA hardware reports an overrun, but PulseAudio's ALSA plugin drops the audio silently.  So
    every LOSS_CHECK_BLOCKS reads, if the read left the input's buffer empty (nothing delivered
    is still waiting: a read right after a stall drains a backlog first), the frames delivered
    so far are compared with the time since the stream started.  The difference is latency plus
    the sound card's clock drift, both slow; a baseline follows them.  A jump beyond
    LOSS_THRESHOLD_S is lost audio, which the caller skips in its offsets so that stream time
    stays true.  Pure logic: the caller supplies times and counts.
    """

    def __init__(self, sample_rate: int, started_at: float) -> None:
        self._rate = sample_rate
        self._started_at = started_at
        self._threshold = round(LOSS_THRESHOLD_S * sample_rate)
        self._baseline: float | None = None

    def lost_frames(self, now: float, delivered: int) -> int:
        """Frames lost since the last call, given ``delivered`` frames (lost ones included as
        reported) at ``now``; call it only when the input's buffer is empty."""
        behind = round((now - self._started_at) * self._rate) - delivered
        if self._baseline is None:
            self._baseline = behind
            return 0
        if behind - self._baseline > self._threshold:
            return round(behind - self._baseline)  # the caller adds them to ``delivered`` from now on
        self._baseline += (behind - self._baseline) * _BASELINE_FOLLOW
        return 0


class Source(Protocol):
    """What the daemon reads audio from."""

    name: str  # device name or file path (the events' "source")
    sample_rate: int  # rate of the blocks
    live: bool  # audio that will not wait: the daemon drops utterances rather than fall behind it
    idle: bool  # set by the reader: nobody speaks, blocks of IDLE_BLOCKS will do

    def start(self) -> None: ...

    def read(self, timeout: float) -> AudioBlock | None:
        """The next block, or None when nothing arrived within ``timeout`` seconds."""
        ...

    @property
    def finished(self) -> bool:
        """True once a file source's last block was returned; a microphone never finishes."""
        ...

    def stop(self) -> None: ...

    def counters(self) -> Counters:
        """Its share: frames_captured, frames_lost, overflows, queue_drops, queue_depth."""
        ...


def _block_samples(sample_rate: int, block_ms: int) -> int:
    if sample_rate <= 0 or block_ms <= 0:
        raise ValueError(f"sample rate and block length must be positive, got {sample_rate} Hz, {block_ms} ms")
    return sample_rate * block_ms // 1000


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as error:  # libportaudio2 missing
        raise UserError(
            f"cannot use audio devices: {_one_line(error)}; install Debian package libportaudio2, or use --source FILE"
        ) from None
    return sounddevice


def rescan_devices() -> None:
    """Make PortAudio enumerate devices again.

    PortAudio lists devices once, when initialised, so a device plugged in (or a sound
    server started) afterwards stays invisible until this is called. It closes every open
    stream: call it only when none is open.
    """
    sd = _sounddevice()
    try:
        sd._terminate()
        sd._initialize()
    except sd.PortAudioError as error:
        raise DeviceError(f"PortAudio could not list devices again: {_one_line(error)}") from None


def list_input_devices() -> list[dict]:
    """PortAudio's input devices: index, name, default_samplerate, max_input_channels, is_default."""
    sd = _sounddevice()
    default = sd.default.device[0]
    return [
        {
            "index": index,
            "name": info["name"],
            "default_samplerate": info["default_samplerate"],
            "max_input_channels": info["max_input_channels"],
            "is_default": index == default,
        }
        for index, info in enumerate(sd.query_devices())
        if info["max_input_channels"] > 0
    ]


def _describe(devices: list[dict]) -> str:
    return ", ".join(f'{device["index"]} "{device["name"]}"' for device in devices)


def resolve_device(device: str | int | None) -> int | None:
    """The PortAudio index for a device given by index, exact name or unique case-insensitive substring.

    None means PortAudio's default input and stays None when there is one (the first input
    device otherwise). Raises DeviceError with one line when nothing or more than one matches.
    """
    devices = list_input_devices()
    if not devices:
        raise DeviceError("no audio input devices found; use --source FILE to read an audio file instead")
    if device is None:
        return None if any(d["is_default"] for d in devices) else devices[0]["index"]
    if isinstance(device, int) or device.strip().isdigit():
        index = int(device)
        if any(d["index"] == index for d in devices):
            return index
        raise DeviceError(f"no input device with index {index}; input devices: {_describe(devices)}")
    matches = [d for d in devices if d["name"] == device] or [d for d in devices if device.lower() in d["name"].lower()]
    if len(matches) == 1:
        return matches[0]["index"]
    if not matches:
        raise DeviceError(f'no input device matches "{device}"; input devices: {_describe(devices)}')
    raise DeviceError(f'input device "{device}" is ambiguous: {_describe(matches)}; give its index or full name')


class MicSource:
    """Live capture from a PortAudio input device (sounddevice ``InputStream``).

    A capture thread does blocking reads and only puts each block it read (a fresh array) into a bounded queue.
    Blocking reads rather than PortAudio's callback: sounddevice builds its callback with cffi,
    which needs memory both writable and executable, and the systemd unit forbids that
    (MemoryDenyWriteExecute=yes).

    The device and a sample rate it accepts are settled in ``__init__``, so ``name`` and
    ``sample_rate`` are known before ``start()``: ``sample_rate`` is FALLBACK_RATE when the
    device refused the requested rate. Offsets count every frame PortAudio delivered, queue
    drops included, and skip the frames the sound system lost (found by LossDetector), so
    stream time stays true. ``read`` raises DeviceLostError once the stream ended on its
    own (or delivered nothing for STALL_S) and every block it delivered was read; ``reopen()``
    then finds the device again, as PortAudio sees it now, and restarts the stream.
    """

    def __init__(
        self, device: str | int | None = None, sample_rate: int = 16000, block_ms: int = 30, queue_blocks: int = 200
    ) -> None:
        sd = _sounddevice()
        self._wanted = device
        self._device = resolve_device(device)
        self.name: str = sd.query_devices(self._device, "input")["name"]
        self.sample_rate = self._supported_rate(sd, sample_rate)
        self._block = _block_samples(self.sample_rate, block_ms)
        self._last_block_at = 0.0
        self.live = True
        self.idle = False
        self._queue: queue.SimpleQueue[AudioBlock] = queue.SimpleQueue()  # C: no Python lock per block
        self._queue_blocks = queue_blocks
        self._stream: sounddevice.InputStream | None = None
        self._thread: threading.Thread | None = None
        self._frames = 0  # frames delivered, for the counters
        self._next_start = 0  # the next block's offset: frames delivered plus frames lost
        self._frames_lost = 0
        self._overflows = 0
        self._queue_drops = 0
        self._stopping = threading.Event()  # the current stream's; each stream gets its own
        self._lost = False
        self._first_sample_at: float | None = None  # monotonic time of the first stream's first sample

    def _refusal(self, sd: ModuleType, rate: int) -> str | None:
        """Why the device will not capture mono 16-bit audio at ``rate``, or None if it will."""
        try:
            sd.check_input_settings(self._device, channels=1, dtype="int16", samplerate=rate)
        except (sd.PortAudioError, ValueError) as error:
            return _one_line(error)
        return None

    def _supported_rate(self, sd: ModuleType, wanted: int) -> int:
        errors = []
        for rate in dict.fromkeys((wanted, FALLBACK_RATE)):
            if (reason := self._refusal(sd, rate)) is None:
                return rate
            errors.append(f"{rate} Hz: {reason}")
        raise DeviceError(f'cannot capture mono 16-bit audio from "{self.name}" ({"; ".join(errors)})')

    def _capture(self, stream: sounddevice.InputStream, stopping: threading.Event) -> None:
        """The capture thread: read, copy into the queue, nothing else (no logging, no waiting on the queue).

        ``stopping`` is this stream's own: a thread that outlives its stream (a driver that hung in
        a read past stop()) touches nothing once it is set, whatever stream runs by then.
        """
        sd = _sounddevice()
        losses = LossDetector(self.sample_rate, time.monotonic())
        delivered = 0  # in this stream, lost frames included
        for count in itertools.count():
            try:
                data, overflowed = stream.read(self._block * IDLE_BLOCKS if self.idle else self._block)
                # Every few blocks (each check costs a call into the driver): is the backlog drained?
                caught_up = count % LOSS_CHECK_BLOCKS == 0 and stream.read_available < self._block
            except (sd.PortAudioError, OSError):
                break
            if stopping.is_set():
                return
            now = time.monotonic()
            if overflowed:
                self._overflows += 1
            if delivered == 0:  # this stream's first block
                first_sample_at = now - len(data) / self.sample_rate
                if self._first_sample_at is None:
                    self._first_sample_at = first_sample_at
                else:  # reopened: offsets go on counting time since the first sample, across the gap
                    since_first = round((first_sample_at - self._first_sample_at) * self.sample_rate)
                    self._next_start = max(self._next_start, since_first)
            delivered += len(data)
            if caught_up:
                lost = losses.lost_frames(now, delivered)
                delivered += lost
                self._next_start += lost
                self._frames_lost += lost
            start = self._next_start
            self._next_start += len(data)
            self._frames += len(data)
            self._last_block_at = now
            if self._queue.qsize() < self._queue_blocks:  # this thread alone adds: the check holds
                self._queue.put(AudioBlock(data.reshape(-1), start, now))  # a fresh array per read: no copy
            else:
                self._queue_drops += 1
        if not stopping.is_set():
            self._lost = True

    def start(self) -> None:
        sd = _sounddevice()
        self._lost = False
        try:
            stream = sd.InputStream(
                device=self._device, channels=1, samplerate=self.sample_rate, dtype="int16", blocksize=self._block
            )
        except sd.PortAudioError as error:
            raise DeviceError(f'cannot open input device "{self.name}": {_one_line(error)}') from None
        try:
            stream.start()
        except sd.PortAudioError as error:
            stream.close(ignore_errors=True)
            raise DeviceError(f'cannot start input device "{self.name}": {_one_line(error)}') from None
        self._last_block_at = time.monotonic()
        self._stream = stream
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._capture, args=(stream, self._stopping), name="ser-stream-capture", daemon=True
        )
        self._thread.start()

    def read(self, timeout: float) -> AudioBlock | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            if self._lost:
                raise DeviceLostError(f'input device "{self.name}" stopped delivering audio (unplugged?)') from None
            if self._stream is not None and time.monotonic() - self._last_block_at > STALL_S:
                raise DeviceLostError(f'input device "{self.name}" delivered no audio for {STALL_S:g} s') from None
            return None

    def reopen(self) -> None:
        """Close what is left of the stream, let PortAudio look for devices afresh, and start again.

        The device is found by what was asked for (index, name or the default) among the devices
        present now, at the rate the stream had: the pipeline after it is built for that rate.
        """
        self.stop()
        if self._thread is not None and self._thread.is_alive():
            raise DeviceError(f'the last capture from "{self.name}" is still stuck in the driver')
        rescan_devices()
        sd = _sounddevice()
        self._device = resolve_device(self._wanted)
        name = sd.query_devices(self._device, "input")["name"]
        if (reason := self._refusal(sd, self.sample_rate)) is not None:
            raise DeviceError(f'input device "{name}" does not take {self.sample_rate} Hz now: {reason}')
        self.name = name
        self.start()

    @property
    def finished(self) -> bool:
        return False

    def stop(self) -> None:
        """Stop and close the stream; blocks already captured stay readable. Safe to call twice.

        The capture thread is waited for first, up to STALL_S: it is one block away, but a stream's
        first read can take two seconds (PulseAudio starting the source), and closing the stream
        under a read crashes the process (PortAudio frees what the read uses).  A thread still in
        the driver after that is left with its stream; ``reopen`` refuses until it is out.
        """
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STALL_S)
            if self._thread.is_alive():
                return
        stream.abort(ignore_errors=True)  # abort, not stop: nothing left to drain
        stream.close(ignore_errors=True)

    def counters(self) -> Counters:
        return Counters(
            frames_captured=self._frames,
            frames_lost=self._frames_lost,
            overflows=self._overflows,
            queue_drops=self._queue_drops,
            queue_depth=self._queue.qsize(),
        )


class FileSource:
    """An audio file (any format libsndfile reads, any rate) as a stream of blocks.

    Decoded and resampled a second at a time, so an hour-long file costs no more memory than a
    short one. A file that cannot be opened fails in ``__init__``; bad data further in (corrupt
    frames, NaN samples) raises AudioError from ``read`` once the blocks before it were handed
    out. With ``realtime`` the blocks come at wall-clock pace, as from a microphone; without
    it, as fast as they are read, and the daemon waits for its worker rather than dropping
    utterances (``live`` is False). The last block may be shorter.
    """

    #: Input decoded per refill, in seconds.
    CHUNK_S = 1.0

    def __init__(self, path: str | Path, sample_rate: int = 16000, block_ms: int = 30, realtime: bool = False) -> None:
        self.name = str(path)
        self.sample_rate = sample_rate
        self.realtime = realtime
        self.live = realtime
        self.idle = False
        self._block = _block_samples(sample_rate, block_ms)
        self._file = open_audio(path)
        rate = self._file.samplerate
        self._resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32") if rate != sample_rate else None
        self._chunk = max(1, int(rate * self.CHUNK_S))
        self._pending = np.empty(0, dtype=np.int16)  # decoded, resampled, not yet handed out
        self._decoded_all = False
        self._frames_read = 0  # of the file, at its own rate
        self._position = 0
        self._started_at: float | None = None

    def _decode_more(self) -> None:
        samples = read_frames(self._file, self._chunk).mean(axis=1)
        self._frames_read += samples.size
        last = samples.size < self._chunk or self._file.tell() >= self._file.frames
        if last:
            warn_if_short(self._file, self._frames_read)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        self._pending = np.concatenate((self._pending, to_int16(samples)))
        self._decoded_all = last

    def start(self) -> None:
        self._started_at = time.monotonic()

    def read(self, timeout: float) -> AudioBlock | None:
        if self._started_at is None:
            raise RuntimeError("FileSource.read() before start()")
        wanted = self._block * IDLE_BLOCKS if self.idle else self._block
        while self._pending.size < wanted and not self._decoded_all:
            self._decode_more()
        if self.finished:
            return None
        size = min(wanted, self._pending.size)
        end = self._position + size
        if self.realtime:
            captured_at = self._started_at + end / self.sample_rate
            wait = captured_at - time.monotonic()
            if wait > timeout:
                time.sleep(max(timeout, 0.0))
                return None
            if wait > 0:
                time.sleep(wait)
        else:
            captured_at = time.monotonic()
        block = AudioBlock(self._pending[:size], self._position, captured_at)
        self._pending = self._pending[size:]
        self._position = end
        return block

    @property
    def finished(self) -> bool:
        return self._decoded_all and self._pending.size == 0

    def stop(self) -> None:
        self._file.close()

    def counters(self) -> Counters:
        return Counters(frames_captured=self._position)
