"""The seed's feature recipe, with librosa: what `ser_stream.features` is held to (tests) and timed against (bench)."""

from __future__ import annotations

import librosa
import numpy as np


def seed_recipe(samples: np.ndarray, rate: int) -> np.ndarray:
    """DataFlair's extract_feature(mfcc=True, chroma=True, mel=True), verbatim in spirit."""
    stft = np.abs(librosa.stft(samples))
    mfccs = np.mean(librosa.feature.mfcc(y=samples, sr=rate, n_mfcc=40).T, axis=0)
    chroma = np.mean(librosa.feature.chroma_stft(S=stft, sr=rate).T, axis=0)
    mel = np.mean(librosa.feature.melspectrogram(y=samples, sr=rate).T, axis=0)
    return np.hstack([mfccs, chroma, mel])
