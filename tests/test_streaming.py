"""Streaming recognition (asr/streaming.py, `asr stream`): chunk by chunk equals the whole file."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import load_audio
from asr.checkpoint import checkpoint_payload, save_checkpoint
from asr.cli import main
from asr.features import FeatureConfig, FeatureExtractor, num_frames
from asr.model import DeepSpeech2, ModelConfig, load_preset
from asr.pcm_input import PcmReader
from asr.recognizer import Recognizer
from asr.streaming import Stream, StreamingError
from asr.tokenizer import CharTokenizer
from asr.waveform import StreamResampler, resample
from conftest import SHORT_UTTS, dev4spk_flac

REPO = Path(__file__).resolve().parents[1]
UTTS = SHORT_UTTS
MODELS = {
    "conv-gru-lookahead": replace(load_preset("tiny"), bidirectional=False, lookahead_context=3),
    "ds2-convs-gru": replace(load_preset("ds2"), rnn_hidden=32, rnn_layers=2, head_sizes=(16,),
                             bidirectional=False),
    "fc-lstm-lookahead": ModelConfig(frontend="fc", fc_context=4, fc_stride=2, fc_sizes=(32,), rnn_type="lstm",
                                     rnn_hidden=16, rnn_layers=2, bidirectional=False, lookahead_context=2),
}


_flac = dev4spk_flac


def _recognizer(cfg: ModelConfig, kind: str = "spectrogram", normalize: str = "global") -> Recognizer:
    """A random forward-only model with non-trivial BatchNorm statistics and CMVN."""
    torch.manual_seed(0)
    features = FeatureExtractor(FeatureConfig(kind=kind, normalize=normalize))
    features.set_cmvn(torch.rand(features.num_features) * 4, torch.rand(features.num_features) + 0.5)
    tokenizer = CharTokenizer()
    model = DeepSpeech2(cfg, features.num_features, tokenizer.vocab_size)
    for module in model.modules():
        if hasattr(module, "running_var"):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return Recognizer(features, model, tokenizer).eval()


def _streamed(recognizer: Recognizer, wave: np.ndarray, chunk: int) -> tuple[Stream, list[int]]:
    stream, frames_after = Stream(recognizer), []
    for start in range(0, len(wave), chunk):
        stream.accept(wave[start:start + chunk])
        frames_after.append(stream.num_frames)
    return stream, frames_after


@pytest.mark.parametrize("name", sorted(MODELS))
def test_streamed_log_probs_equal_the_whole_file(name, shared_data):
    recognizer = _recognizer(MODELS[name], kind="fbank" if name.startswith("fc") else "spectrogram")
    wave = load_audio(_flac(shared_data, UTTS[2]))  # (S,) 2.5 s at 16 kHz
    full, lens = recognizer.log_probs(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))  # (1, T', V)
    for chunk in (1000, 1600, 7777, len(wave)):  # 62.5 ms, 100 ms, an odd size, everything at once
        stream, _ = _streamed(recognizer, wave, chunk)
        hyp = stream.finish()
        assert stream.log_probs.shape == full[0].shape, chunk
        assert torch.allclose(stream.log_probs, full[0], atol=1e-5), (chunk, (stream.log_probs - full[0]).abs().max())
        whole = recognizer.recognize(torch.from_numpy(wave)[None], lens.new_tensor([len(wave)]))[0]
        assert (hyp.text, hyp.tokens, hyp.frames) == (whole.text, whole.tokens, whole.frames)
        assert hyp.score == pytest.approx(whole.score, abs=1e-3)
    for tiny in (wave[:100], wave[:320], wave[:2000]):  # shorter than a window, one window, 12 frames
        stream = Stream(recognizer)
        stream.accept(tiny)
        stream.finish()
        whole, _ = recognizer.log_probs(torch.from_numpy(tiny)[None], torch.tensor([len(tiny)]))
        assert torch.allclose(stream.log_probs, whole[0], atol=1e-5), len(tiny)


def test_finish_decodes_the_whole_utterance_with_a_beam_search(shared_data):
    from asr.beam_search import BeamSearchConfig, BeamSearchDecoder

    recognizer = _recognizer(MODELS["conv-gru-lookahead"])
    decoder = BeamSearchDecoder(recognizer.tokenizer, config=BeamSearchConfig(beam_size=8))  # no LM
    wave = load_audio(_flac(shared_data, UTTS[3]))
    stream = Stream(recognizer, decoder)
    for start in range(0, len(wave), 3200):
        stream.accept(wave[start:start + 3200])  # partial results: greedy
    final = stream.finish()
    whole = recognizer.recognize(torch.from_numpy(wave)[None], torch.tensor([len(wave)]), decoder)[0]
    assert final.text == whole.text and final.score == pytest.approx(whole.score, abs=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streaming_on_cuda_matches_the_whole_file_on_cpu(shared_data):
    recognizer = _recognizer(MODELS["conv-gru-lookahead"])
    wave = load_audio(_flac(shared_data, UTTS[1]))
    full, _ = recognizer.log_probs(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))  # (1, T', V), CPU
    stream, _ = _streamed(recognizer.to("cuda"), wave, 1600)
    stream.finish()
    assert torch.allclose(stream.log_probs, full[0], atol=1e-4)


def test_output_frames_come_as_soon_as_their_context_has_arrived(shared_data):
    """The stream is not the whole file computed at the end: after each chunk it holds every output
    frame whose input has arrived (front-end field, then the lookahead's tau frames)."""
    recognizer = _recognizer(MODELS["conv-gru-lookahead"])
    stride, left_pad, field = recognizer.model.frontend.time_context()
    assert (stride, left_pad, field) == (2, 15, 31)  # tiny: 2 convolutions of 11 frames, strides 2 and 1
    tau = recognizer.model.cfg.lookahead_context
    wave = load_audio(_flac(shared_data, UTTS[0]))
    stream, frames_after = _streamed(recognizer, wave, 1600)
    for i, got in enumerate(frames_after):
        feats = num_frames(min(len(wave), (i + 1) * 1600), recognizer.features.cfg)
        ready = max(0, (feats - field + left_pad) // stride + 1 - tau)
        assert got == ready, (i, got, ready)
    total = stream.num_frames
    stream.finish()
    assert stream.num_frames - total == (field - 1 - left_pad) // stride + tau  # what waited for the end
    lag_s = (field - 1 - left_pad) * 0.010 + tau * 0.020  # 150 ms of front-end context, 60 ms of lookahead
    assert lag_s == pytest.approx(0.21)


def test_models_that_need_the_whole_utterance_are_refused():
    with pytest.raises(StreamingError, match="forward-only"):
        Stream(_recognizer(load_preset("tiny")))  # bidirectional
    with pytest.raises(StreamingError, match="normalized with global statistics"):
        Stream(_recognizer(MODELS["conv-gru-lookahead"], normalize="utterance"))
    stream = Stream(_recognizer(MODELS["conv-gru-lookahead"]))
    assert stream.finish().text == ""  # no audio at all
    with pytest.raises(StreamingError, match="finished"):
        stream.accept(np.zeros(160, dtype=np.float32))
    with pytest.raises(StreamingError, match="mono"):
        Stream(_recognizer(MODELS["conv-gru-lookahead"])).accept(np.zeros((2, 160), dtype=np.float32))


def test_integer_pcm_is_scaled_and_bad_chunks_are_refused_without_harm(shared_data):
    """int16/uint8 chunks (as sound cards deliver) are scaled as files are; a chunk of NaN, booleans
    or complex numbers is a StreamingError naming the cause, and the stream goes on as if it had not come."""
    recognizer = _recognizer(MODELS["conv-gru-lookahead"])
    pcm, rate = sf.read(_flac(shared_data, UTTS[0]), dtype="int16")  # (S,) int16 at 16 kHz
    assert rate == recognizer.features.cfg.sample_rate
    floats, _ = _streamed(recognizer, pcm / np.float32(32768), 1600)
    ints, _ = _streamed(recognizer, pcm, 1600)
    assert ints.finish() == floats.finish() and torch.equal(ints.log_probs, floats.log_probs)
    offset8 = (pcm >> 8).astype(np.int16)  # 8-bit PCM: (x - 128) / 128 of the offset-binary bytes
    bytes8, _ = _streamed(recognizer, (offset8 + 128).astype(np.uint8), 1600)
    floats8, _ = _streamed(recognizer, offset8 / np.float32(128), 1600)
    assert torch.equal(bytes8.log_probs, floats8.log_probs)

    wave = pcm / np.float32(32768)
    stream = Stream(recognizer)
    stream.accept(torch.from_numpy(wave[:8000]).requires_grad_(True))  # detached, not a traceback
    bad = wave[8000:9600].copy()
    bad[[3, 7]] = [np.nan, np.inf]
    refused = {"accept: 2 NaN or infinite samples": bad, "accept: boolean samples": bad > 0,
               "accept: complex samples (complex64)": bad.astype(np.complex64),
               "accept: int64 samples (PCM of unknown full scale)": pcm[8000:9600].astype(np.int64),
               "accept: expected mono samples (N,), got shape (800, 2)": wave[:1600].reshape(800, 2)}
    for message, chunk in refused.items():
        with pytest.raises(StreamingError, match=f"^{re.escape(message)}"):
            stream.accept(chunk)
    stream.accept(np.zeros(0, dtype=np.float32))  # an empty read from a device: nothing happens
    stream.accept(wave[8000:])
    stream.finish()
    assert stream.log_probs.shape == floats.log_probs.shape  # the refused chunks left no trace
    assert torch.allclose(stream.log_probs, floats.log_probs, atol=1e-5)  # (other chunk sizes: float rounding)


def test_a_recognizer_left_in_train_mode_streams_in_eval_mode_and_stays_in_train_mode(shared_data):
    recognizer = _recognizer(MODELS["conv-gru-lookahead"])
    wave = load_audio(_flac(shared_data, UTTS[1]))
    expected, _ = _streamed(recognizer, wave, 1600)
    expected.finish()
    recognizer.model.train()
    stats = {k: v.clone() for k, v in recognizer.model.state_dict().items()}
    streamed, _ = _streamed(recognizer, wave, 1600)
    streamed.finish()
    assert torch.equal(streamed.log_probs, expected.log_probs)
    assert recognizer.model.training and all(m.training for m in recognizer.model.modules())
    assert all(torch.equal(v, stats[k]) for k, v in recognizer.model.state_dict().items())  # BatchNorm untouched


# ------------------------------------------------------------------------------------- asr stream
@pytest.fixture(scope="module")
def trained(short_utterances: list[dict], tmp_path_factory) -> dict[str, Path]:
    """A tiny forward-only model trained briefly with `asr train` on 4 real utterances."""
    tmp = tmp_path_factory.mktemp("stream")
    entries = short_utterances
    manifest = tmp / "train.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    run = tmp / "run"
    assert main(["train", str(REPO / "recipes" / "digits" / "conf" / "small_stream.yaml"), f"out_dir={run}",
                 f"data.train_manifest={manifest}", "preset=tiny", "epochs=2", "threads=1", "max_minutes=0",
                 "model.rnn_layers=2", "model.dropout=0"]) == 0
    bidirectional = tmp / "bi.pt"
    save_checkpoint(checkpoint_payload(_recognizer(load_preset("tiny"))), bidirectional)
    return {"model": run / "model.pt", "audio": [e["audio_filepath"] for e in entries], "bi": bidirectional,
            "tmp": tmp}


def test_asr_stream_prints_what_transcribe_prints(trained, capsys):
    assert main(["transcribe", str(trained["model"]), *trained["audio"]]) == 0
    expected = capsys.readouterr().out
    assert main(["stream", str(trained["model"]), *trained["audio"], "--chunk-ms", "50", "--partials"]) == 0
    out, err = capsys.readouterr()
    assert out == expected
    summaries = [line for line in err.splitlines() if line.startswith("asr: ")]
    assert len(summaries) == 4 and all("in chunks of 50 ms" in s and "RTF" in s for s in summaries)
    partials = [line.split("\t") for line in err.splitlines() if not line.startswith("asr: ")]
    assert partials and all(float(seconds) > 0 for seconds, _ in partials)  # partial results while streaming


def test_asr_stream_reads_raw_pcm_from_stdin(trained):
    wave = load_audio(trained["audio"][0])  # (S,) float at 16 kHz
    pcm = (np.clip(wave, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    streamed = subprocess.run([sys.executable, "-m", "asr.cli", "stream", str(trained["model"]), "-"], input=pcm,
                              capture_output=True, env=env, cwd=REPO, timeout=120)
    assert streamed.returncode == 0, streamed.stderr
    wav = trained["tmp"] / "same.wav"
    sf.write(wav, np.frombuffer(pcm, dtype="<i2"), 16000, subtype="PCM_16")
    whole = subprocess.run([sys.executable, "-m", "asr.cli", "transcribe", str(trained["model"]), str(wav)],
                           capture_output=True, env=env, cwd=REPO, timeout=120, text=True)
    assert streamed.stdout.decode().split("\t")[1] == whole.stdout.split("\t")[1]
    assert streamed.stdout.decode().startswith("-\t")
    # a WAV file on stdin (`asr stream CKPT - < a.wav`): its header was heard as samples; any other
    # rate or sample width gave a transcript of noise, with status 0
    as_file = subprocess.run([sys.executable, "-m", "asr.cli", "stream", str(trained["model"]), "-"],
                             input=wav.read_bytes(), capture_output=True, env=env, cwd=REPO, timeout=120)
    assert as_file.returncode == 1 and as_file.stdout == b""
    assert as_file.stderr.decode().splitlines() == [
        "asr: skipped -: standard input holds a WAV file, and '-' reads raw 16-bit mono PCM; give the file's name instead",
        "asr: 1 of 1 files could not be read"]


def test_asr_stream_errors(trained, capsys):
    assert main(["stream", str(trained["bi"]), trained["audio"][0]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("asr: error: ") and "bi.pt: streaming needs a forward-only" in err
    for chunk_ms in ("0", "nan", "inf", "1e9"):  # nan and inf were tracebacks, 1e9 a 32 GB read
        assert main(["stream", str(trained["model"]), trained["audio"][0], "--chunk-ms", chunk_ms]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"--chunk-ms {float(chunk_ms):g}: must be more than 0 and at most 10000 ms" in err
    missing = trained["tmp"] / "missing.wav"
    assert main(["stream", str(trained["model"]), str(missing), trained["audio"][0]]) == 1  # reported, skipped
    out, err = capsys.readouterr()
    assert out.startswith(trained["audio"][0]) and "skipped" in err and "missing.wav" in err
    assert err.strip().splitlines()[-1] == "asr: 1 of 2 files could not be read"


def test_asr_stream_stdin_empty_or_closed(trained):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    stream = [sys.executable, "-m", "asr.cli", "stream", str(trained["model"])]
    # nothing arrived: reported like an unreadable file, not an empty transcript with status 0
    empty = subprocess.run([*stream, trained["audio"][0], "-"], input="", capture_output=True, env=env, cwd=REPO,
                           timeout=120, text=True)
    assert empty.returncode == 1 and empty.stdout.startswith(trained["audio"][0] + "\t")
    assert "-\t" not in empty.stdout and "Traceback" not in empty.stderr
    assert empty.stderr.strip().splitlines()[-2:] == ["asr: skipped -: no audio arrived on standard input",
                                                      "asr: 1 of 2 files could not be read"]
    # started with standard input closed (<&-): one line, before the model is read (an AttributeError once)
    closed = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", *stream, "-"], capture_output=True, env=env,
                            cwd=REPO, timeout=120, text=True)
    assert closed.returncode == 2 and closed.stdout == ""
    assert closed.stderr == "asr: error: -: standard input is closed; no audio can arrive on it\n"


def test_ctrl_c_on_a_live_input_prints_its_final_transcript(trained):
    """Ctrl-C ends `asr stream -` as the end of input would: the audio heard so far is transcribed
    whole, and the command ends by itself (stdin still open) with status 0."""
    wave = load_audio(trained["audio"][0])  # (S,) float at 16 kHz
    pcm = (np.clip(wave, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
    half = len(pcm) // 4 * 2
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "asr.cli", "stream", str(trained["model"]), "-"], env=env,
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(pcm[:half])
    proc.stdin.flush()
    assert proc.stderr.readline().decode().startswith("asr: -: listening on standard input")
    proc.send_signal(signal.SIGINT)
    try:
        proc.stdin.write(pcm[half:])  # a live source goes on sending: the stream ends after the next chunk
        proc.stdin.flush()
    except BrokenPipeError:  # it had ended already
        pass
    assert proc.wait(timeout=120) == 0, proc.stderr.read()  # stdin is still open
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    try:
        proc.stdin.close()
    except BrokenPipeError:  # what the write left in the buffer cannot reach the ended process
        pass
    assert stdout.decode().startswith("-\t") and stdout.decode().count("\n") == 1
    heard_s = float(re.search(r"asr: -: ([\d.]+) s in chunks", stderr.decode())[1])
    assert 0 < heard_s < len(wave) / 16000  # what was read before the interrupt, not all that was sent


def test_asr_stream_refuses_an_mp3_without_id3_tag_on_stdin(shared_data, tmp_path):
    """An MP3 file often starts with its first MPEG frame, not an ID3 tag (libsndfile, radio
    streams): its bytes were heard as raw PCM and transcribed as noise with status 0. Raw PCM whose
    first samples happen to look like one frame header (-1 is ``ff ff``) is still heard."""
    checkpoint = tmp_path / "forward.pt"
    save_checkpoint(checkpoint_payload(_recognizer(MODELS["conv-gru-lookahead"])), checkpoint)
    wave = load_audio(_flac(shared_data, UTTS[0]))  # (S,) float at 16 kHz
    mp3 = tmp_path / "a.mp3"
    sf.write(mp3, wave, 16000, format="MP3", subtype="MPEG_LAYER_III")
    assert not mp3.read_bytes().startswith(b"ID3")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    stream = [sys.executable, "-m", "asr.cli", "stream", str(checkpoint), "-"]
    piped = subprocess.run(stream, input=mp3.read_bytes(), capture_output=True, env=env, cwd=REPO, timeout=120)
    assert piped.returncode == 1 and piped.stdout == b""
    assert piped.stderr.decode().splitlines() == [
        "asr: skipped -: standard input holds an MP3 file, and '-' reads raw 16-bit mono PCM; give the file's name instead",
        "asr: 1 of 1 files could not be read"]
    pcm = np.concatenate([np.array([-1, 100], dtype="<i2"),  # ff ff 64 00: MPEG-1 layer I, 192 kbit/s, 48 kHz
                          (np.clip(wave, -1, 1 - 1 / 32768) * 32768).astype("<i2")]).tobytes()
    raw = subprocess.run(stream, input=pcm, capture_output=True, env=env, cwd=REPO, timeout=120)
    assert raw.returncode == 0 and raw.stdout.decode().startswith("-\t"), raw.stderr


# ----------------------------------------------------------- asr stream -: another rate, channels, format
def test_asr_stream_reads_raw_input_at_any_rate_channels_and_format(shared_data, tmp_path, capsys):
    """What arecord, sox or ffmpeg send at the device's rate and channels: 44.1 kHz stereo 16-bit,
    and 8 kHz float, are resampled as they arrive and give the transcripts and durations of the
    same audio named as files (16 kHz mono FLAC; FSDD's 8 kHz WAV)."""
    checkpoint = tmp_path / "forward.pt"
    save_checkpoint(checkpoint_payload(_recognizer(MODELS["conv-gru-lookahead"])), checkpoint)
    flac = _flac(shared_data, UTTS[0])
    up = resample(load_audio(flac), 16000, 44100)  # (S,) 2.37 s
    stereo = (np.clip(np.stack([0.8 * up, 1.2 * up], axis=1), -1, 1 - 1 / 32768) * 32768).round().astype("<i2")
    fsdd = shared_data / "fsdd" / "recordings" / "3_theo_5.wav"  # 8 kHz, 0.23 s
    floats = sf.read(fsdd, dtype="float32")[0].astype("<f4")
    assert main(["stream", str(checkpoint), str(flac), str(fsdd)]) == 0
    out, err = capsys.readouterr()
    flac_text, fsdd_text = [line.split("\t")[1] for line in out.splitlines()]
    assert flac_text and fsdd_text and re.findall(r": ([\d.]+) s in chunks", err) == ["2.37", "0.23"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    stream = [sys.executable, "-m", "asr.cli", "stream", str(checkpoint)]
    for options, data, text, duration, what in [
            (["--rate", "44100", "--channels", "2"], stereo.tobytes(), flac_text, "2.37",
             "raw 16-bit stereo PCM at 44100 Hz, resampled to 16000 Hz (14.2 ms held back)"),
            (["--rate", "8000", "--format", "f32le"], floats.tobytes(), fsdd_text, "0.23",
             "raw 32-bit float mono PCM at 8000 Hz, resampled to 16000 Hz (8.6 ms held back)")]:
        raw = subprocess.run([*stream, "-", *options], input=data, capture_output=True, env=env, cwd=REPO,
                             timeout=120)
        err = raw.stderr.decode()
        assert raw.returncode == 0 and raw.stdout.decode() == f"-\t{text}\n", err
        assert err.splitlines()[0] == f"asr: -: listening on standard input for {what} (Ctrl-C or the end of " \
                                      "the input finishes it)"
        assert f"asr: -: {duration} s in chunks of 100 ms" in err  # seconds at the input's rate


def test_44k_stereo_read_in_random_pieces_streams_as_the_16k_mono_file(shared_data):
    """The log-probs of speech sent as 44.1 kHz stereo int16 in reads cut anywhere equal those of
    the same frames in a WAV file read whole, and are within 1e-3 of the 16 kHz mono original's."""
    from test_pcm_input import Trickle

    recognizer = _recognizer(MODELS["conv-gru-lookahead"])
    wave = load_audio(_flac(shared_data, UTTS[1]))  # (S,) 16 kHz
    up = resample(wave, 16000, 44100)
    stereo = (np.clip(np.stack([0.8 * up, 1.2 * up], axis=1), -1, 1 - 1 / 32768) * 32768).round().astype("<i2")
    stream, resampler = Stream(recognizer), StreamResampler(44100, 16000)
    for samples in PcmReader(Trickle(stereo.tobytes(), seed=0, most=3000), channels=2).chunks(4410):
        stream.accept(resampler.accept(samples))
    stream.accept(resampler.finish())
    stream.finish()
    as_file = io.BytesIO()
    sf.write(as_file, stereo, 44100, format="WAV", subtype="PCM_16")
    from_file = load_audio(as_file.getvalue())  # (S,) channels averaged, resampled whole
    for reference, atol in ((from_file, 1e-5), (wave, 1e-3)):
        full, _ = recognizer.log_probs(torch.from_numpy(reference)[None], torch.tensor([len(reference)]))
        assert stream.log_probs.shape == full[0].shape
        assert torch.allclose(stream.log_probs, full[0], atol=atol), (stream.log_probs - full[0]).abs().max()


def test_asr_stream_raw_input_options_are_checked_before_the_model_is_read(tmp_path, capsys):
    missing = str(tmp_path / "missing.pt")  # an error about it would mean the model was read first
    audio = str(tmp_path / "a.wav")
    refused = {("-", "--rate", "4000"): "--rate 4000: must be from 8000 to 768000 Hz",
               ("-", "--rate", "0"): "--rate 0: must be from 8000 to 768000 Hz",
               ("-", "--rate", "1000000"): "--rate 1000000: must be from 8000 to 768000 Hz",
               ("-", "--channels", "0"): "--channels 0: must be from 1 to 64",
               ("-", "--channels", "65"): "--channels 65: must be from 1 to 64",
               ("-", "--channels", "-1"): "--channels -1: must be from 1 to 64",
               ("-", "--rate", "-8000"): "--rate -8000: must be from 8000 to 768000 Hz",
               ("-", audio, "-"): "'-' is given 2 times; standard input can be read only once",
               (audio, "--rate", "44100", "--channels", "2"):
                   "--rate, --channels: describe raw audio on standard input ('-') only, and no '-' is given; "
                   "audio files carry their own rate, channels and sample format (raw PCM in a file goes in as "
                   "'- < FILE')",
               (audio, "--format", "s16le"): "--format: describe raw audio on standard input ('-') only"}
    for args, message in refused.items():
        assert main(["stream", missing, *args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"asr: error: {message}"), err
    for args, message in {("--format", "s24le"): "argument --format: invalid choice: 's24le'",
                          ("--rate", "44.1k"): "argument --rate: invalid int value: '44.1k'"}.items():
        with pytest.raises(SystemExit) as exit:
            main(["stream", missing, "-", *args])
        err = capsys.readouterr().err
        assert exit.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_asr_stream_help_gives_the_defaults_and_ranges_of_the_raw_input_options(capsys):
    from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
    from asr.cli.stream import MAX_CHUNK_MS
    from asr.pcm_input import MAX_RAW_CHANNELS, PCM_FORMATS

    with pytest.raises(SystemExit):
        main(["stream", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # the lines as argparse wraps them, joined
    assert f"--chunk-ms CHUNK_MS audio per chunk, milliseconds, at most {MAX_CHUNK_MS:g} (default 100)" in text
    assert f"--rate HZ its sample rate, {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz (default: the model's)" in text
    assert f"--channels N interleaved channels, 1 to {MAX_RAW_CHANNELS}, averaged to mono (default 1)" in text
    assert f"--format {{{','.join(PCM_FORMATS)}}} samples: 16-bit signed integers (the default)" in text


def test_samples_too_large_for_finite_features_stop_the_stream_there(shared_data):
    """1e30 samples gave features of inf and NaN and, without a word, an empty transcript."""
    recognizer = _recognizer(MODELS["conv-gru-lookahead"])
    wave = load_audio(shared_data / "fsdd" / "recordings" / "3_theo_5.wav")  # (S,) 16 kHz, 0.30 s
    stream = Stream(recognizer)
    stream.accept(wave[:3200])  # 0.2 s
    before = stream.num_frames
    with pytest.raises(StreamingError, match=r"^the audio 0\.\d+ s in \(samples up to .*\) makes features that are "
                                             r"not finite: far too loud to be audio$"):
        stream.accept(wave[3200:] * np.float32(1e30))
    assert stream.stopped and stream.num_frames >= before
    with pytest.raises(StreamingError, match="far too loud"):  # the input ended there
        stream.accept(wave[:1600])
    final = stream.finish()
    assert torch.isfinite(stream.log_probs).all() and len(stream.log_probs) == stream.num_frames > 0 and final.text is not None
