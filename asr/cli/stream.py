"""``asr stream``: audio files fed in chunks as a live source would, or raw PCM from standard
input (:mod:`asr.pcm_input`), decoded as it arrives (:mod:`asr.streaming`)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from asr.cli.decoding import beam_decoder, check_decoding_options
from asr.interrupts import CtrlC

MAX_CHUNK_MS = 10_000.0  # stream --chunk-ms: a live source delivers far smaller chunks


def cmd_stream(args: argparse.Namespace) -> int:
    from asr.audio import AudioError, load_audio
    from asr.checkpoint import load_recognizer
    from asr.pcm_input import PcmReader, container_on, describe_pcm
    from asr.streaming import Stream, StreamingError
    from asr.waveform import StreamResampler

    if not 0 < args.chunk_ms <= MAX_CHUNK_MS:
        raise StreamingError(f"--chunk-ms {args.chunk_ms:g}: must be more than 0 and at most {MAX_CHUNK_MS:g} ms")
    _check_raw_input_options(args)
    check_decoding_options(args)
    if "-" in args.audio and sys.stdin is None:  # started with standard input closed (<&-)
        raise StreamingError("-: standard input is closed; no audio can arrive on it")
    if "-" in args.audio and sys.stdin.isatty():  # keystrokes would be heard as samples
        raise StreamingError("-: standard input is a terminal; pipe raw PCM into it "
                             "(e.g. arecord -t raw -f S16_LE -r 16000 | asr stream CKPT - --rate 16000)")
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    decoder = beam_decoder(args, recognizer.tokenizer)
    try:
        Stream(recognizer)  # refuses a model that cannot stream before any audio is read
    except StreamingError as e:
        raise StreamingError(f"{args.checkpoint}: {e}") from None
    rate = recognizer.features.cfg.sample_rate
    raw_rate, channels, sample_format = args.rate or rate, args.channels or 1, args.format or "s16le"
    raw = f"raw {describe_pcm(sample_format, channels)} PCM"
    frame_s = recognizer.frame_shift_s
    failed = stopped = 0
    ended = CtrlC()  # Ctrl-C ends the live input: its final transcript is printed, the inputs after it left alone
    for path in args.audio:
        in_rate = raw_rate if path == "-" else rate  # files are read whole and resampled by load_audio
        chunk = max(1, round(in_rate * args.chunk_ms / 1000))
        stream, resampler = Stream(recognizer, decoder), StreamResampler(in_rate, rate)
        if path == "-":
            container = container_on(sys.stdin.buffer)
            if container:  # its header would be heard as samples, and any other rate or width as noise
                failed += 1
                article = "an" if container in ("MP3", "Ogg") else "a"
                print(f"asr: skipped -: standard input holds {article} {container} file, and '-' reads {raw}; "
                      "give the file's name instead", file=sys.stderr)
                continue
            what = f"{raw} at {in_rate} Hz"
            if in_rate != rate:
                what += f", resampled to {rate} Hz ({1000 * resampler.latency_s:.1f} ms held back)"
            reader = PcmReader(sys.stdin.buffer, channels, sample_format, "-", in_rate)
            chunks = _until_ctrl_c(ended, reader.chunks(chunk), what)
        else:
            try:
                wave = load_audio(path, rate)  # (S,)
            except AudioError as e:
                failed += 1
                print(f"asr: skipped {e}", file=sys.stderr)
                continue
            chunks = (wave[i:i + chunk] for i in range(0, len(wave), chunk))
        heard, lag_s, compute_s, slowest_s, text, bad = 0, 0.0, 0.0, 0.0, "", None
        try:
            for samples in chunks:  # (N,) mono at in_rate
                start = time.perf_counter()
                partial = stream.accept(resampler.accept(samples))
                spent = time.perf_counter() - start
                compute_s, slowest_s, heard = compute_s + spent, max(slowest_s, spent), heard + len(samples)
                lag_s = max(lag_s, heard / in_rate - stream.num_frames * frame_s)  # audio not yet in the output
                if args.partials and partial.text != text:
                    print(f"{heard / in_rate:.2f}\t{partial.text}", file=sys.stderr, flush=True)
                text = partial.text
        except AudioError as e:  # a NaN or infinite f32le sample: the input stops there, as at its end
            bad = str(e)
        except StreamingError as e:  # samples too large for finite features: the stream stopped there
            bad = f"{path}: {e}"
        # nothing arrived, or a bad sample came within the first chunk (as a wrong --format shows at once):
        # reported as an unreadable file is, with no transcript of a few samples
        if path == "-" and (not heard or bad and heard < chunk):
            failed += 1
            print(f"asr: skipped {bad or _nothing_on_stdin(reader)}", file=sys.stderr)
            continue
        if path == "-" and reader.trailing_bytes:  # the end of a frame that never came cannot be heard
            print(f"asr: -: standard input ended within a frame: {_plural(reader.trailing_bytes, 'trailing byte')} "
                  f"dropped ({reader.layout()})", file=sys.stderr)
        start = time.perf_counter()
        if not stream.stopped:
            stream.accept(resampler.finish())  # what the resampler held back (nothing at the model's rate)
        final = stream.finish()
        compute_s += time.perf_counter() - start
        if stream.stopped and not bad:  # (by the last samples)
            bad = f"{path}: {stream.stopped}"
        print(f"{path}\t{final.text}", flush=True)
        audio_s = heard / in_rate
        print(f"asr: {path}: {audio_s:.2f} s in chunks of {args.chunk_ms:g} ms; compute {compute_s:.2f} s "
              f"(RTF {compute_s / max(audio_s, 1e-9):.3f}), slowest chunk {1000 * slowest_s:.0f} ms; "
              f"output behind the audio by at most {lag_s:.2f} s", file=sys.stderr)
        if bad:
            stopped += 1
            print(f"asr: stopped {bad}; the transcript is of the audio before it", file=sys.stderr)
        if ended.requested:  # Ctrl-C finished the live input: the inputs after it are left alone
            break
    if failed:
        print(f"asr: {failed} of {len(args.audio)} files could not be read", file=sys.stderr)
    return 1 if failed or stopped else 0


def _nothing_on_stdin(reader) -> str:
    """Why no frame of raw PCM arrived on standard input (a ``PcmReader`` that has read to its end)."""
    if not reader.trailing_bytes:
        return "-: no audio arrived on standard input"
    return (f"-: standard input ended within its first frame: {_plural(reader.trailing_bytes, 'byte')} arrived "
            f"({reader.layout()})")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _check_raw_input_options(args: argparse.Namespace) -> None:
    """Refuse '-' given twice, and --rate, --channels or --format out of range or given without '-'
    (files carry their own)."""
    from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
    from asr.pcm_input import MAX_RAW_CHANNELS
    from asr.streaming import StreamingError

    if args.audio.count("-") > 1:  # the first reads it to its end (or to Ctrl-C, which ends the command)
        raise StreamingError(f"'-' is given {args.audio.count('-')} times; standard input can be read only once")
    given = [f"--{name}" for name in ("rate", "channels", "format") if getattr(args, name) is not None]
    if given and "-" not in args.audio:
        raise StreamingError(f"{', '.join(given)}: describe raw audio on standard input ('-') only, and no '-' "
                             "is given; audio files carry their own rate, channels and sample format (raw PCM in a "
                             "file goes in as '- < FILE')")
    if args.rate is not None and not MIN_SAMPLE_RATE <= args.rate <= MAX_SAMPLE_RATE:
        raise StreamingError(f"--rate {args.rate}: must be from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
    if args.channels is not None and not 1 <= args.channels <= MAX_RAW_CHANNELS:
        raise StreamingError(f"--channels {args.channels}: must be from 1 to {MAX_RAW_CHANNELS}")


def _until_ctrl_c(ctrl_c: CtrlC, chunks: Iterator, what: str) -> Iterator:
    """``chunks`` of the live input until it ends or Ctrl-C: the chunk being decoded is finished,
    so the final transcript is whole; a second Ctrl-C interrupts as usual. "listening" is said once
    Ctrl-C is taken so (a Ctrl-C right after the line was an interrupt, status 130)."""
    with ctrl_c:
        print(f"asr: -: listening on standard input for {what} (Ctrl-C or the end of the input finishes it)",
              file=sys.stderr, flush=True)
        for item in chunks:
            yield item
            if ctrl_c.requested:
                return
