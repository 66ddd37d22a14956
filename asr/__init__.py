"""asr: a Deep Speech 2-style speech recognition toolkit."""

__version__ = "0.1.0"
