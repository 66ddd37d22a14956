"""Synthetic speech: render text lines with the system's speech synthesizers into a training corpus.

Engines (Debian packages; each used only when its program is on ``PATH``):

* ``espeak-ng``: the English voices (``en-us``, ``en-gb``, ``en-gb-scotland``, ``en-gb-x-rp``,
  ``en-029``, ...) times the voice variants (``m1``-``m7``, ``f1``-``f5``, ``klatt``...), speed
  (words per minute around its 175) and pitch (0-99 around its 50) drawn per utterance;
* ``flite``: the voices ``kal16``, ``awb``, ``rms``, ``slt``; speed drawn per utterance
  (``duration_stretch``), pitch left to the voice.

Each utterance is drawn from ``random.Random(seed)``, so a corpus is reproducible; its audio is
written as 16 kHz 16-bit mono wav, its manifest line (``asr.manifest``) keeps the text as given and
names the voice as the speaker. Files already rendered are kept (a run that stopped goes on).

Example (needs espeak-ng)::

    plans = plan_renditions(["hello world"], variants=2, seed=0, engines=available_engines())
    render_corpus(plans, "data/tts")  # data/tts/wav/tts-000000-<key>.wav ..., data/tts/tts.jsonl
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from asr.audio import load_audio
from asr.manifest import Utterance, write_manifest
from asr.outputs import atomic_output
from asr.text import normalize_text

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                 "en-029", "en-us-nyc")
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")


class TTSError(RuntimeError):
    """A synthesizer is missing or failed; the message names the engine, voice and text."""


@dataclass(frozen=True)
class Rendition:
    """One utterance to synthesize.

    Attributes:
        text: the text as given (written to the manifest).
        engine: ``espeak-ng`` or ``flite``.
        voice: the engine's voice (espeak-ng: ``language+variant``).
        speed: tempo relative to the engine's default (1.0; above 1 is faster).
        pitch: espeak-ng pitch, 0-99 (50 is its default); ignored by flite.
    """

    text: str
    engine: str
    voice: str
    speed: float = 1.0
    pitch: int = 50

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.voice}"

    @property
    def key(self) -> str:
        """8 hex digits that change with any field, so a kept file always matches its rendition."""
        return hashlib.sha1(repr((self.text, self.engine, self.voice, self.speed, self.pitch)).encode()).hexdigest()[:8]


def available_engines() -> list[str]:
    """The supported synthesizers found on ``PATH``, e.g. ``['espeak-ng', 'flite']``."""
    return [e for e in ("espeak-ng", "flite") if shutil.which(e)]


def engine_voices(engine: str) -> list[str]:
    """The voices this module draws from for ``engine`` (espeak-ng: language+variant pairs)."""
    if engine == "espeak-ng":
        return [f"{v}+{var}" if var else v for v in ESPEAK_VOICES for var in ESPEAK_VARIANTS]
    if engine == "flite":
        return list(FLITE_VOICES)
    raise ValueError(f"unknown TTS engine {engine!r} (espeak-ng or flite)")


def plan_renditions(lines: Sequence[str], variants: int = 1, seed: int = 0, engines: Sequence[str] = ("espeak-ng",),
                    speed_range: tuple[float, float] = (0.8, 1.25),
                    pitch_range: tuple[int, int] = (30, 70)) -> list[Rendition]:
    """``variants`` renditions of each line that normalizes to words, each with a voice, speed and
    pitch drawn from ``random.Random(seed)``; the variants of one line get different voices. The
    engine is drawn first, uniformly, then one of its voices: each engine renders about an equal share.

    >>> [(r.engine, r.text) for r in plan_renditions(["hi there", "", "!"], variants=2)]
    [('espeak-ng', 'hi there'), ('espeak-ng', 'hi there')]
    """
    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    if not engines:
        raise TTSError("no speech synthesizer: install espeak-ng (apt-get install espeak-ng) or flite")
    if not speed_range[0] <= speed_range[1] or not 0 <= pitch_range[0] <= pitch_range[1] <= 99:
        raise ValueError(f"bad speed range {speed_range} or pitch range {pitch_range} (pitch 0-99)")
    voices = {e: engine_voices(e) for e in engines}
    rng = random.Random(seed)
    plans = []
    for line in lines:
        text = " ".join(line.split())
        if not normalize_text(text):
            continue
        for engine, voice in _draw_voices(voices, variants, rng):
            speed = round(rng.uniform(*speed_range), 3)
            pitch = rng.randint(*pitch_range)
            plans.append(Rendition(text, engine, voice, speed, pitch))
    return plans


def _draw_voices(voices: dict[str, list[str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` different (engine, voice) pairs (fewer if there are fewer): each time an engine drawn
    uniformly among those with a voice left, then one of its voices, so every engine gets about the
    same share however many voices it has (espeak-ng 128 pairs, flite 4)."""
    left = {e: list(v) for e, v in voices.items()}
    drawn = []
    while len(drawn) < n and any(left.values()):
        engine = rng.choice([e for e, v in left.items() if v])
        voice = left[engine].pop(rng.randrange(len(left[engine])))
        drawn.append((engine, voice))
    return drawn


def synthesize(r: Rendition, out_wav: str | Path, sample_rate: int = SAMPLE_RATE) -> float:
    """Render ``r`` to ``out_wav`` (16-bit mono wav at ``sample_rate``); returns its duration in seconds.

    A ``sample_rate`` below the engine's own band-limits the speech, e.g. 8000 to match telephone or
    8 kHz corpora such as FSDD (the training loader resamples it back to the feature rate).

    Raises:
        TTSError: the engine is missing, fails, or writes no audio.
    """
    program = shutil.which(r.engine)
    if program is None:
        raise TTSError(f"{r.engine}: not found on PATH")
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        raw = Path(tmp) / "raw.wav"
        text_file = Path(tmp) / "text.txt"
        text_file.write_text(r.text + "\n", encoding="utf-8")
        if r.engine == "espeak-ng":
            cmd = [program, "-v", r.voice, "-s", str(round(175 * r.speed)), "-p", str(r.pitch),
                   "-w", str(raw), "-f", str(text_file)]
        else:
            cmd = [program, "-voice", r.voice, "-f", str(text_file), "-o", str(raw),
                   "--setf", f"duration_stretch={1 / r.speed:.4f}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not raw.is_file() or raw.stat().st_size <= 44:
            cause = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise TTSError(f"{r.engine} voice {r.voice}: no audio for {r.text[:60]!r} ({cause})")
        wave = load_audio(raw, sample_rate)  # (S,) float32
    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_wav) as part:
        sf.write(part, wave, sample_rate, subtype="PCM_16", format="WAV")
    return len(wave) / sample_rate


def render_corpus(plans: Sequence[Rendition], out_dir: str | Path, name: str = "tts",
                  sample_rate: int = SAMPLE_RATE) -> Path:
    """Synthesize ``plans`` into ``out_dir/wav/<name>-NNNNNN-<key>.wav`` at ``sample_rate``, write
    ``out_dir/<name>.jsonl``.

    A wav that already exists at ``sample_rate`` is kept (its duration read from the header): its
    name carries the rendition's ``key``, so it was rendered from the same text, voice, speed and
    pitch. One at another rate is rendered again. Returns the manifest.

    Raises:
        TTSError: a synthesizer fails.
    """
    out_dir = Path(out_dir)
    utts = []
    for i, r in enumerate(plans):
        wav = out_dir / "wav" / f"{name}-{i:06d}-{r.key}.wav"
        info = sf.info(wav) if wav.is_file() else None
        if info is not None and info.samplerate == sample_rate:
            duration_s = info.duration
        else:
            duration_s = synthesize(r, wav, sample_rate)
        utts.append(Utterance(str(wav.resolve()), round(duration_s, 4), r.text, speaker=r.speaker))
        if (i + 1) % 100 == 0:
            logger.info("tts rendered=%d of %d", i + 1, len(plans))
    manifest = out_dir / f"{name}.jsonl"
    write_manifest(manifest, utts)
    return manifest
