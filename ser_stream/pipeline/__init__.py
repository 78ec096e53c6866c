"""The running pipeline, one object per thread:

    input (capture thread) ─► main loop: segment ─► Worker: features → adapter → classify → publish
    MicSource, FileSource     Daemon (daemon.py)     (worker.py), fed work items (work.py)
    ReopeningSource (device.py): a lost microphone, reopened with backoff
    Adaptation (adaptation.py): the worker's voice adapter and its state file
    Reload (reload.py): a SIGHUP's new config and model, loaded in the background

The stages themselves are modules of their own, pure where they can be: ``capture``,
``segmenter``, ``features``, ``classifier``, ``publisher``.
"""

from .daemon import Daemon
from .device import ReopeningSource

__all__ = ["Daemon", "ReopeningSource"]
