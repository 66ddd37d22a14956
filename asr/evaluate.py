"""Score a recognizer on a manifest: WER/CER, aligned per-utterance report, real-time factor."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from asr.data import AudioCache, DurationBatchSampler, ReadLog, SpeechDataset, collate
from asr.decode import Decoder, DecodeError, Hypothesis, decode_utterances, greedy_decode
from asr.manifest import Utterance, manifest_of
from asr.metrics import ErrorReport, error_report
from asr.outputs import OutputError, atomic_output, check_output, check_output_folder
from asr.recognizer import Recognizer
from asr.text import normalize_text

logger = logging.getLogger(__name__)


class EvaluationStopped(Exception):
    """A scoring stopped between two batches because its ``should_stop`` said so (e.g. on Ctrl-C)."""


@dataclass
class EvalResult:
    """Hypotheses in manifest order, the error report, and timing (RTF = decode time / audio time)."""

    utts: list[Utterance]
    refs: list[str]
    hyps: list[Hypothesis]
    report: ErrorReport
    audio_s: float
    decode_s: float

    @property
    def rtf(self) -> float:
        return self.decode_s / self.audio_s if self.audio_s else float("nan")

    def write(self, out_dir: str | Path, manifest: str | Path) -> Path:
        """Write ``hyps.txt`` (id TAB text), ``errs.txt`` (aligned REF/HYP) and, last, ``wer.txt``
        (the summary and the manifest scored) into ``out_dir``, over nothing but an earlier report on
        the same manifest (see :func:`report_folder`); returns the folder.

        Raises:
            OutputError: the folder holds something else.
        """
        out = report_folder(out_dir, manifest)
        out.mkdir(parents=True, exist_ok=True)
        names = utterance_ids(self.utts)
        texts = {
            "hyps.txt": "".join(f"{n}\t{h.text}\n" for n, h in zip(names, self.hyps)),
            "errs.txt": "\n\n".join(self.report.alignments) + "\n",
            "wer.txt": f"{self.summary()}\n{MANIFEST_PREFIX}{os.path.abspath(manifest)}\n",
        }
        for name, text in texts.items():
            with atomic_output(out / name) as tmp:  # names that are not UTF-8 as their own bytes, as printed
                tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        return out

    def summary(self) -> str:
        return "\n".join([
            self.report.words.summary("WER"),
            self.report.chars.summary("CER"),
            f"utterances {len(self.utts)}  audio {self.audio_s:.1f} s  decode {self.decode_s:.1f} s  RTF {self.rtf:.4f}",
        ])


MANIFEST_PREFIX = "manifest "  # the line of wer.txt naming the manifest scored
REPORT_FILES = ("hyps.txt", "errs.txt", "wer.txt")


def report_folder(out_dir: str | Path, manifest: str | Path) -> Path:
    """``out_dir``, once it is certain that writing the report on ``manifest`` there loses nothing:
    it holds none of the report's files, or an earlier report of ``asr evaluate`` on the same
    manifest (decoded anew, e.g. with other beam settings). Call it before decoding, so that a
    refusal comes before the work.

    Raises:
        OutputError: ``out_dir`` is not a folder, a report file there was not written by
            ``asr evaluate``, or the report there is on another manifest.
    """
    out = Path(out_dir)
    check_output_folder(out, "; no report written (name a folder with --out)")
    scored = _scored_manifest(out / "wer.txt")
    for name in REPORT_FILES:
        check_output(out / name, lambda _: scored is not None, "part of a report of asr evaluate")
    if scored and scored != os.path.abspath(manifest):
        raise OutputError(f"{out}: holds the report on {scored}; not overwritten by the report on {manifest} "
                          "(name another folder with --out)")
    return out


def _scored_manifest(wer_txt: Path) -> str | None:
    """The manifest an ``asr evaluate`` report names in its ``wer.txt`` ('' for a report written
    before reports named it), or None when the file is missing or is not such a report."""
    try:
        lines = wer_txt.read_bytes()[:100_000].decode("utf-8", "surrogateescape").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if len(lines) < 3 or not (lines[0].startswith("WER ") and lines[1].startswith("CER ")):
        return None
    return next((line[len(MANIFEST_PREFIX):] for line in lines if line.startswith(MANIFEST_PREFIX)), "")


def utterance_id(utt: Utterance) -> str:
    """A readable utterance name: the audio file's stem (plus the offset for segments)."""
    stem = Path(utt.audio_filepath).stem
    return f"{stem}@{utt.offset:.2f}" if utt.offset else stem


def utterance_ids(utts: Sequence[Utterance]) -> list[str]:
    """The names of ``utts`` in reports: each one's :func:`utterance_id`, or, where several files
    share it (``spk1/001.wav`` and ``spk2/001.wav``, ``a.wav`` and ``a.flac``), its path from the
    folder all the audio is in.

    >>> [utterance_ids([Utterance(p, 1.0, "a") for p in ps]) for ps in (["/d/s1/1.wav", "/d/s2/1.wav"], ["/d/x.wav"])]
    [['s1/1.wav', 's2/1.wav'], ['x']]
    """
    ids = [utterance_id(u) for u in utts]
    counts: dict[str, int] = {}
    for name in ids:
        counts[name] = counts.get(name, 0) + 1
    if all(n == 1 for n in counts.values()):
        return ids
    top = os.path.commonpath([os.path.dirname(os.path.abspath(u.audio_filepath)) for u in utts])
    relative = [os.path.relpath(os.path.abspath(u.audio_filepath), top) for u in utts]
    return [name if counts[name] == 1 else f"{path}@{u.offset:.2f}" if u.offset else path
            for name, path, u in zip(ids, relative, utts)]


def batch_log_probs(
    recognizer: Recognizer, utts: Sequence[Utterance], batch_s: float = 300.0, cache: AudioCache | None = None,
    read_log: ReadLog | None = None, should_stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor, float]]:
    """Run the recognizer (in eval mode) over ``utts`` in duration-sorted batches of at most
    ``batch_s`` padded audio-seconds; yields each batch's utterance indices, CTC log-probs
    (B, T', V), output lengths (B,) and audio seconds. Utterances whose audio cannot be read are left out, and
    warned of by ``read_log`` (a new one when None: e.g. a trainer's, which warns of each file once a run),
    as are the warnings logged while reading them (``asr.read_notes``);
    one too short for the model gets output length 0 (logged: an empty hypothesis). ``cache`` holds decoded audio (e.g. the dev set a trainer scores every epoch).
    The global random state is left as it was, so scoring inside a training run does not change it.

    Raises:
        EvaluationStopped: ``should_stop()`` returned True, which is asked before each batch is run.
    """
    recognizer.eval()
    dataset = SpeechDataset(list(utts), recognizer.tokenizer, sample_rate=recognizer.features.cfg.sample_rate,
                            skip_unreadable=True, cache=cache)
    sampler = DurationBatchSampler([u.duration for u in utts], max_batch_s=batch_s, shuffle=False, sortagrad=True)
    # its own generator: a DataLoader draws its base seed from the global RNG otherwise
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator())
    read_log = read_log or ReadLog()
    for batch in loader:
        if should_stop is not None and should_stop():
            raise EvaluationStopped
        read_log.report(batch)
        if batch.size:
            log_probs, out_lens = recognizer.log_probs(batch.waves, batch.wave_lens)
            short = (out_lens == 0).cpu()  # (B,)
            for index, wave_len in zip(batch.indices[short].tolist(), batch.wave_lens[short].tolist()):
                utt = utts[index]
                logger.warning("%s", utt.located(f"{utt.audio_filepath}: {recognizer.too_short(wave_len)}: "
                                                 "empty hypothesis"))
            audio_s = float(batch.wave_lens.sum()) / recognizer.features.cfg.sample_rate
            yield batch.indices.tolist(), log_probs, out_lens, audio_s


def none_readable(utts: Sequence[Utterance], purpose: str) -> DecodeError:
    """The error for a set of which no utterance could be read, naming its manifest; ``purpose``:
    what there is then nothing to do, e.g. "score"."""
    where = manifest_of(utts)
    return DecodeError(f"{where + ': ' if where else ''}no utterance of the set could be read: nothing to {purpose}")


def evaluate_utterances(
    recognizer: Recognizer, utts: Sequence[Utterance], batch_s: float = 300.0, decoder: Decoder | None = None,
    cache: AudioCache | None = None, jobs: int = 1, read_log: ReadLog | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EvalResult:
    """Decode ``utts`` in duration-sorted batches and score them against their transcripts.

    ``decoder`` (e.g. a ``BeamSearchDecoder``) maps log-probs and lengths to hypotheses; default: greedy.
    With a decoder, the model runs over every batch first and the decoder then decodes the
    utterances on ``jobs`` processes (<= 0: one per CPU core; :func:`asr.decode.decode_utterances`);
    the result does not depend on ``jobs``.
    ``cache`` holds decoded audio (e.g. the dev set a trainer scores after every epoch);
    ``read_log`` warns of the unreadable files and the reading's warnings (see :func:`batch_log_probs`).
    ``should_stop`` is asked before each batch; when it returns True, the scoring stops there.

    Restores the recognizer's train/eval mode afterwards, so it can run inside a training loop.

    Raises:
        EvaluationStopped: ``should_stop`` returned True.
        DecodeError: none of the audio could be read.
    """
    was_training = recognizer.model.training
    hyps: list[Hypothesis | None] = [None] * len(utts)
    deferred: dict[int, torch.Tensor] = {}  # index -> (T, V) log-probs, decoded after the model has run
    start = time.perf_counter()
    audio_s = 0.0
    try:
        for indices, log_probs, out_lens, batch_audio_s in batch_log_probs(recognizer, utts, batch_s, cache,
                                                                           read_log, should_stop):
            audio_s += batch_audio_s
            if decoder is None:  # greedy, batched
                for index, hyp in zip(indices, greedy_decode(log_probs, out_lens, recognizer.tokenizer)):
                    hyps[index] = hyp
            else:
                for b, index in enumerate(indices):
                    deferred[index] = log_probs[b, : int(out_lens[b])].cpu()  # (T_b, V)
        if deferred:
            for index, hyp in zip(deferred, decode_utterances(decoder, list(deferred.values()), jobs)):
                hyps[index] = hyp
    finally:
        if was_training:
            recognizer.model.train()
            recognizer.features.train()
    decode_s = time.perf_counter() - start
    unreadable = sum(h is None for h in hyps)
    if unreadable:
        logger.warning("skipped %d of %d utterances with unreadable audio (not scored)", unreadable, len(utts))
    kept = [(u, h) for u, h in zip(utts, hyps) if h is not None]
    if not kept:
        raise none_readable(utts, "score")
    utts = [u for u, _ in kept]
    refs = [normalize_text(u.text) for u in utts]
    # hypotheses under the references' text policy: a lexicon or LM of upper-case words (OpenSLR's
    # LibriSpeech ones) writes ZERO, which is the reference's "zero"
    report = error_report(refs, [normalize_text(h.text) for _, h in kept], ids=utterance_ids(utts))
    return EvalResult(utts=utts, refs=refs, hyps=[h for _, h in kept], report=report, audio_s=audio_s,
                      decode_s=decode_s)
