"""ser-stream: real-time speech emotion recognition for always-on devices."""

__version__ = "0.1.0"
