"""Streaming recognition: audio given in chunks as it arrives, the same CTC output as the whole file.

A forward-only model (``bidirectional: false``, with or without ``lookahead_context``) whose
features are normalized with global statistics (or not at all) can transcribe while the audio
arrives, which is what DS2's lookahead convolution is for (Amodei et al. 2016, sec. 3.7):

- features: a frame is made once its whole window has arrived (frames do not overlap the future);
- front-end: recomputed over a short window that ends at the newest frame; only the outputs whose
  receptive field has fully arrived are kept (``time_context`` of the front-end);
- recurrent layers: each carries its hidden state from chunk to chunk (``RecurrentLayer.step``);
- lookahead: an output frame waits for its tau future frames;
- at ``finish`` the end of the utterance is padded exactly as ``DeepSpeech2.forward`` pads it.

So the log-probabilities equal those of ``Recognizer.log_probs`` on the whole audio (up to float
rounding), for any chunk sizes. The price is latency: the front-end's look into the future
(``field - 1 - left_pad`` feature frames: 250 ms for the DS2 convolutions) plus tau output frames.

Example:
    >>> stream = Stream(load_recognizer("exp/digits-small_stream/model.pt"))  # doctest: +SKIP
    >>> for chunk in chunks:  # doctest: +SKIP
    ...     print(stream.accept(chunk).text)  # the greedy transcript so far
    >>> stream.finish().text  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from asr.waveform import AudioError, mono_samples
from asr.decode import Decoder, Hypothesis, ctc_collapse
from asr.features import num_frames
from asr.recognizer import Recognizer
from asr.tokenizer import CharTokenizer


class StreamingError(Exception):
    """The model cannot run on a stream (it needs the whole utterance), or the stream is finished."""


class Stream:
    """One utterance, recognized chunk by chunk; see the module docstring.

    A stream takes no sample rate: its chunks must be mono samples at the model's rate,
    ``recognizer.features.cfg.sample_rate`` (``asr.waveform.StreamResampler`` converts chunks at another
    rate; unconverted, such chunks are not detected and give wrong transcripts).

    Args:
        recognizer: features, a forward-only model and the tokenizer (run in eval mode while a chunk
            is processed, whatever mode it was left in).
        decoder: used by ``finish`` on the whole utterance's log-probs (e.g. a beam search with an
            LM); partial results are always greedy.

    Raises:
        StreamingError: a bidirectional model, or features normalized per utterance.
    """

    def __init__(self, recognizer: Recognizer, decoder: Decoder | None = None):
        model, features = recognizer.model, recognizer.features
        if model.cfg.bidirectional:
            raise StreamingError("streaming needs a forward-only model (bidirectional: false, "
                                 "optionally lookahead_context); this one is bidirectional")
        if features.cfg.normalize == "utterance":
            raise StreamingError("streaming needs features normalized with global statistics "
                                 "(features.normalize: global); this model normalizes per utterance")
        self.recognizer, self.decoder = recognizer, decoder
        self.stride, self.left_pad, self.field = model.frontend.time_context()
        self.finished = False
        self.stopped: str | None = None  # why the stream stopped taking audio (see accept), or None
        self._samples = np.zeros(0, dtype=np.float32)  # arrived samples not yet in a frame
        self._num_samples = 0  # all samples so far
        self._feats = torch.zeros(0, model.num_features)  # (T, F) frames from _feat0 on
        self._feat0 = 0  # index of _feats[0] among all frames
        self._next_out = 0  # the next front-end output frame to compute
        self._states: list = [None] * len(model.rnns)
        self._pending = torch.zeros(0, model.rnns[-1].out_dim)  # (t, H): frames waiting for lookahead
        self._log_probs: list[Tensor] = []  # (t, V) pieces, in time order
        self._num_out = 0  # output frames computed
        self._last_label = recognizer.tokenizer.blank_id  # the greedy label of the last output frame
        self._tokens: list[int] = []  # the greedy path collapsed so far (as ctc_collapse gives it)
        self._token_frames: list[int] = []
        self._score = 0.0  # sum of the greedy path's log-probs
        self._text, self._text_tokens = "", 0  # the partial text, and how many tokens it holds

    @property
    def num_frames(self) -> int:
        """Output frames computed so far."""
        return self._num_out

    @property
    def log_probs(self) -> Tensor:
        """(T', V) log-probabilities of the output frames computed so far."""
        vocab = self.recognizer.model.vocab_size
        return torch.cat(self._log_probs) if self._log_probs else torch.zeros(0, vocab)

    @torch.inference_mode()
    def accept(self, samples: np.ndarray | Tensor) -> Hypothesis:
        """Add samples (N,): mono, at the model's sample rate (``features.cfg.sample_rate``), float in
        [-1, 1] or integer PCM (int16, int32, uint8: scaled as ``asr.audio`` scales files); returns
        the greedy transcript of everything computed so far. A chunk that is refused leaves the
        stream as it was, except one whose samples are so large (1e20, say: floats that are not
        audio) that they make features that are not finite: the stream stops before the first such
        frame, as if the audio had ended there; ``stopped`` says why, the chunks after it are refused
        and ``finish`` gives the transcript of the audio before (``finish`` too may stop it so, on
        the last samples, without raising).

        Raises:
            StreamingError: after ``finish`` or once ``stopped``; ``samples`` is not one-dimensional,
                is bool, complex or int64, holds NaN/inf, or stops the stream.
        """
        if self.finished:
            raise StreamingError("accept: the stream is finished; start a new Stream")
        if self.stopped:
            raise StreamingError(self.stopped)
        if not isinstance(samples, (np.ndarray, Tensor)):
            samples = np.asarray(samples)
        if samples.ndim != 1:
            raise StreamingError(f"accept: expected mono samples (N,), got shape {tuple(samples.shape)}")
        if len(samples):
            try:
                samples = mono_samples(samples, "accept")  # (N,) float32
            except AudioError as e:
                raise StreamingError(str(e)) from None
            self._samples = np.concatenate([self._samples, samples])
            self._num_samples += len(samples)
        with self.recognizer.evaluating():
            self._add_frames(final=False)
        if self.stopped:
            raise StreamingError(self.stopped)
        return self._partial()

    @torch.inference_mode()
    def finish(self) -> Hypothesis:
        """Pad the end as the whole-utterance model does, compute the last frames and decode all
        of them (with ``decoder`` if given). An utterance too short for the model gives ''. A stream
        ``stopped`` (in ``accept`` or here) ends where it stopped."""
        if self.finished:
            raise StreamingError("finish: the stream is already finished")
        self.finished = True
        with self.recognizer.evaluating():
            self._add_frames(final=True)
        if not self._num_out:
            return Hypothesis(text="")
        if self.decoder is None:
            return self._partial()
        return self.decoder(self.log_probs[None], torch.tensor([self.num_frames]))[0]

    # ---------------------------------------------------------------------------------- stages
    def _add_frames(self, final: bool) -> None:
        features = self.recognizer.features
        win, hop = features.cfg.win_length, features.cfg.hop_length
        total = self._feat0 + len(self._feats)  # frames made so far
        # Frames whose window has arrived; at the end, a stream shorter than a window gets one
        # zero-padded frame, as the whole-utterance extractor does.
        new = num_frames(self._num_samples, features.cfg) - total
        if self.stopped or not final and len(self._samples) < win:
            new = 0
        if new > 0:
            take = min(len(self._samples), (new - 1) * hop + win)
            wave = torch.from_numpy(self._samples[:take])[None].to(self.recognizer.device)  # (1, S)
            feats, _ = features(wave, torch.tensor([take]))  # (1, new, F)
            feats = feats[0, :new].cpu()  # (new, F)
            finite = torch.isfinite(feats).all(dim=1)  # (new,)
            good = new if bool(finite.all()) else int(finite.to(torch.int8).argmin())  # frames before a bad one
            self._feats = torch.cat([self._feats, feats[:good]])
            if good < new:
                peak = float(np.abs(self._samples[good * hop:good * hop + win]).max())
                self.stopped = (f"the audio {(total + good) * hop / features.cfg.sample_rate:.3f} s in (samples up to "
                                f"{peak:.3g}) makes features that are not finite: far too loud to be audio")
            self._samples = self._samples[new * hop:] if good == new else self._samples[:0]
        self._run_frontend(final)

    def _run_frontend(self, final: bool) -> None:
        model = self.recognizer.model
        total = self._feat0 + len(self._feats)
        if final:
            last = int(model.output_lengths(torch.tensor([total]))[0]) - 1
        else:  # the last output whose receptive field has fully arrived
            last = (total - self.field + self.left_pad) // self.stride
        if last < self._next_out or len(self._feats) == 0:
            if final:  # nothing new, but the lookahead may hold frames to flush
                self._run_rnns(torch.zeros(1, 0, model.frontend.out_dim, device=self.recognizer.device), final)
            return
        device = self.recognizer.device
        feats = self._feats[None].to(device)  # (1, T, F), from frame _feat0 (a multiple of stride)
        x, _ = model.frontend(feats, torch.tensor([len(self._feats)], device=device))  # (1, T', D)
        first = self._feat0 // self.stride  # the global index of x[:, 0]
        x = x[:, self._next_out - first:last + 1 - first]  # (1, t, D)
        self._next_out = last + 1
        # keep the frames the next output reads (its field starts at stride * next - left_pad)
        keep_from = max(0, self.stride * self._next_out - self.left_pad) // self.stride * self.stride
        self._feats = self._feats[keep_from - self._feat0:]
        self._feat0 = keep_from
        self._run_rnns(x, final)

    def _run_rnns(self, x: Tensor, final: bool) -> None:
        model = self.recognizer.model
        if x.size(1) == 0:
            x = x.new_zeros(1, 0, model.rnns[-1].out_dim)
        else:
            for i, rnn in enumerate(model.rnns):
                x, self._states[i] = rnn.step(x, self._states[i])  # (1, t, H)
        if model.lookahead is not None:
            tau = model.lookahead.context
            x = torch.cat([self._pending.to(x.device), x[0]])[None]  # (1, pending + t, H)
            if final:
                x = torch.nn.functional.pad(x, (0, 0, 0, tau))  # zeros after the end, as forward
            self._pending = x[0, max(0, x.size(1) - tau):].cpu() if not final else self._pending[:0]
            if x.size(1) <= tau:
                return
            x = model.lookahead.valid(x)  # (1, t', H)
        if x.size(1) == 0:
            return
        log_probs = model.classify(x).float().log_softmax(dim=-1)[0].cpu()  # (t', V)
        self._log_probs.append(log_probs)
        best, labels = log_probs.max(dim=-1)  # (t',), (t',)
        self._score += float(best.sum())
        labels = labels.tolist()
        tokens, frames = ctc_collapse(labels, self.recognizer.tokenizer.blank_id, previous=self._last_label)
        self._tokens += tokens
        self._token_frames += [self._num_out + f for f in frames]
        self._last_label = labels[-1]
        self._num_out += len(labels)

    def _partial(self) -> Hypothesis:
        tokenizer = self.recognizer.tokenizer
        if isinstance(tokenizer, CharTokenizer):  # characters decode piece by piece: only the new ones
            self._text += tokenizer.decode(self._tokens[self._text_tokens:])
        elif self._text_tokens != len(self._tokens):  # word pieces: the whole text again
            self._text = tokenizer.decode(self._tokens)
        self._text_tokens = len(self._tokens)
        return Hypothesis(text=" ".join(self._text.split()), tokens=list(self._tokens),  # as tokens_to_text
                          frames=list(self._token_frames), score=self._score)

