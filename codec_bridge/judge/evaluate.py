"""``python -m codec_bridge evaluate``: is the speech understood, and what did the codec cost?

Every figure comes beside the same figure for reference recordings, because an offline ASR's
absolute word error rate says little (pocketsphinx misreads even clean eSpeak speech):

* ``original``: the corpus recordings themselves;
* ``resynthesis`` (with ``--weights``): the recordings encoded to codes and decoded again,
  exactly as ``extract`` + ``decode`` would, plus log-mel distance, SI-SNR and duration ratio
  against the original;
* ``synthesis`` (with ``--synth DIR``): ``DIR/{id}.wav`` for each utterance, e.g. what a TTS
  model said for that text, with its duration ratio to the original.

Per set: WER and CER (jiwer, after the judge's text normalizer: Whisper's English normalizer
for the Whisper judges, lower case without punctuation for pocketsphinx), and the fraction of
utterances whose transcript is nearer its own text than any other text of the set. When the
utterances name more than one voice, each set's ``voices`` holds the same WER and CER over each
voice's utterances (errors over its words). The JSON report also holds every transcript and
names the judge (engine, model, sha256, normalizer).

When the utterances name their voices and the ``eval`` extra is installed, ``speaker`` adds
per set and per voice the mean SIM to the intended voice and the nearest-voice accuracy among
all voices, with what each voice was taken for (`codec_bridge.judge.speaker`, which also says which
utterances are references and which are judged); each judged utterance keeps its cosine to
every voice (``sims``), so that a bench can ask which of some voices a clip is nearest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import soundfile as sf

from codec_bridge.errors import BridgeError
from codec_bridge.judge.asr import recognizer, text_normalizer, words_of
from codec_bridge.judge.speaker import INSTALL, SpeakerTally, reference_clips
from codec_bridge.judge.speaker import installed as speaker_installed
from codec_bridge.progress import progress_bar
from codec_bridge.readers import read_corpus


def error_rates(refs: list[str], hyps: list[str], normalizer: str = "basic") -> dict[str, float]:
    """Corpus-level WER and CER: errors over all reference words (characters), both sides
    through the same `text_normalizer`."""
    normalize = text_normalizer(normalizer)
    refs, hyps = [normalize(r) for r in refs], [normalize(h) for h in hyps]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {
        "wer": float(words.wer),
        "cer": float(chars.cer),
        "words": sum(len(r.split()) for r in refs),
    }


def nearest_own_text(refs: list[str], hyps: list[str], normalizer: str = "basic") -> float:
    """Fraction of hypotheses whose word error rate is lowest against their own reference,
    strictly below every other distinct reference of the set."""
    normalize = text_normalizer(normalizer)
    refs = [normalize(r) for r in refs]
    distinct = sorted(set(refs))
    hits = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        hyp = normalize(hyp)
        own = jiwer.wer(ref, hyp) if hyp else 1.0
        others = [jiwer.wer(r, hyp) if hyp else 1.0 for r in distinct if r != ref]
        hits += all(own < o for o in others)
    return hits / len(refs) if refs else 0.0


def _read(path: Path) -> tuple[np.ndarray, int]:
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        raise BridgeError(f"{path}: unreadable audio ({e})") from None
    return wav.T, sr


def _summary(
    rows: list[dict[str, Any]], refs: list[str], normalizer: str, speakers: list[str | None]
) -> dict[str, Any]:
    hyps = [r["hyp"] for r in rows]
    out: dict[str, Any] = {**error_rates(refs, hyps, normalizer), "utterances": len(rows)}
    out["nearest_own_text"] = nearest_own_text(refs, hyps, normalizer)
    for key in ("duration_ratio", "log_mel_distance", "si_snr"):
        values = [r[key] for r in rows if key in r]
        if values:
            out[key] = float(np.mean(values))
    voices = sorted({v for v in speakers if v})
    if len(voices) > 1:
        out["voices"] = {}
        for voice in voices:
            own = [i for i, v in enumerate(speakers) if v == voice]
            rates = error_rates([refs[i] for i in own], [hyps[i] for i in own], normalizer)
            out["voices"][voice] = {**rates, "utterances": len(own)}
    return out


def evaluate(
    items: list[tuple[str, str, Path]],
    *,
    codec=None,
    synth_dir: str | Path | None = None,
    resynthesis_dir: str | Path | None = None,
    vocabulary: str | list[str] | None = "corpus",
    jsgf: str | Path | None = None,
    asr: str = "auto",
    device: str = "cpu",
    progress: bool = False,
    speakers: list[str | None] | None = None,
    speaker_judge: bool = True,
    speaker_refs: list[tuple[str, Path]] | None = None,
    references_per_voice: int = 3,
) -> dict[str, Any]:
    """Judge ``items`` (id, text, reference wav); see the module docstring for the sets.

    ``speakers`` (one voice or None per item) split the error rates by voice and, with
    ``speaker_judge``, turn on the speaker judge, against ``speaker_refs`` (voice, wav of a
    separate corpus) or the first ``references_per_voice`` utterances of each voice
    (`codec_bridge.judge.speaker.SpeakerTally`).

    ``codec`` is a `codec_bridge.codec.Codec` (or None), whose resynthesis is also written
    to ``resynthesis_dir/{id}.wav`` when given; ``asr`` names the judge
    (`codec_bridge.judge.asr.recognizer`); ``vocabulary``, for pocketsphinx, is ``corpus`` (the
    words of the texts), ``None``/``none`` (open language model), a text file whose words
    form it, or a word list."""
    if not items:
        raise BridgeError("evaluate: no utterances to judge")
    texts = [t for _, t, _ in items]
    if vocabulary == "corpus":
        words = words_of(texts)
    elif vocabulary in (None, "none"):
        words = None
    elif isinstance(vocabulary, (str, Path)):
        try:
            words = words_of([Path(vocabulary).read_text(encoding="utf-8")])
        except (OSError, UnicodeDecodeError) as e:
            raise BridgeError(f"{vocabulary}: cannot read the vocabulary file ({e})") from None
    else:
        words = list(vocabulary)
    asr_ = recognizer(asr, words=words, jsgf=jsgf, device=device)
    synth = Path(synth_dir) if synth_dir is not None else None
    if synth is not None:
        missing = [uid for uid, _, _ in items if not (synth / f"{uid}.wav").is_file()]
        if missing:
            raise BridgeError(
                f"{synth / (missing[0] + '.wav')}: not found ({len(missing)} of {len(items)}"
                " utterances have no synthesis in --synth)"
            )
    judged = speakers if speaker_judge else None
    tally, speaker_note = _speaker_tally(items, judged, speaker_refs, references_per_voice)
    sets: dict[str, list[dict[str, Any]]] = {"original": []}
    if codec is not None:
        sets["resynthesis"] = []
    if synth is not None:
        sets["synthesis"] = []
    per_utt, codes = [], []
    for i, (uid, text, path) in enumerate(
        progress_bar(iterable=items, desc="evaluate", disable=not progress, unit="utt")
    ):
        wav, sr = _read(path)
        seconds = wav.shape[-1] / sr
        entry: dict[str, Any] = {"id": uid, "text": text, "seconds": seconds}
        row = {"hyp": asr_.transcribe(wav, sr)}
        sets["original"].append(row)
        entry["original"] = row
        if speakers:
            entry["speaker"] = speakers[i]
        if tally is not None:
            tally.add(i, "original", wav, sr)
        if codec is not None:
            row, c, out = _resynthesis(codec, path, asr_, seconds, resynthesis_dir, uid)
            codes.append(c)
            sets["resynthesis"].append(row)
            entry["resynthesis"] = row
            if tally is not None:
                tally.add(i, "resynthesis", out, codec.sample_rate)
        if synth is not None:
            s_wav, s_sr = _read(synth / f"{uid}.wav")
            row = {
                "hyp": asr_.transcribe(s_wav, s_sr),
                "duration_ratio": s_wav.shape[-1] / s_sr / seconds,
            }
            sets["synthesis"].append(row)
            entry["synthesis"] = row
            if tally is not None:
                tally.add(i, "synthesis", s_wav, s_sr)
        per_utt.append(entry)
    voices = speakers or [None] * len(items)
    summary = {name: _summary(rows, texts, asr_.normalizer, voices) for name, rows in sets.items()}
    if codes:  # distinct codes per level over the whole set: how much of each codebook lives
        levels = np.concatenate(codes, axis=1)
        summary["resynthesis"]["codes_used"] = [len(np.unique(c)) for c in levels]
        summary["resynthesis"]["codebook_size"] = codec.codebook_size
    report: dict[str, Any] = {
        "asr": {
            "engine": asr_.engine,
            **asr_.judge(),
            "normalizer": asr_.normalizer,
            "vocabulary": asr_.vocabulary,
            "words_not_in_dictionary": asr_.unknown,
        },
        "sets": summary,
        "ratios": _ratios(summary),
        "utterances": per_utt,
    }
    if tally is not None:
        report["speaker"], rows = tally.report()
        for (i, name), row in rows.items():
            per_utt[i][name].update({k: row[k] for k in ("sim", "taken_for", "sims")})
    elif speaker_note is not None:
        report["speaker"] = {"skipped": speaker_note}
    if codec is not None:
        report["codec"] = {k: v for k, v in codec.meta().items() if k != "weights"}
        report["codec"]["weights"] = codec.weights
    return report


def _speaker_tally(
    items: list[tuple[str, str, Path]],
    speakers: list[str | None] | None,
    refs: list[tuple[str, Path]] | None,
    k: int,
) -> tuple[SpeakerTally | None, str | None]:
    """The speaker judge's tally when the utterances name voices, else why there is none;
    a separate reference corpus is embedded here, before the utterances."""
    if not speakers or not any(speakers):
        if refs is not None:
            raise BridgeError("--speaker-refs: the utterances judged name no speaker")
        return None, None
    if not speaker_installed():
        if refs is not None:
            raise BridgeError(f"--speaker-refs: the speaker judge is not installed ({INSTALL})")
        return None, f"resemblyzer is not installed ({INSTALL})"
    tally = SpeakerTally(speakers, [p for _, _, p in items], refs, k)
    for voice, path in refs or []:
        tally.add_reference(voice, *_read(path))
    return tally, None


def _resynthesis(
    codec, path: Path, asr_, seconds: float, out_dir: str | Path | None, uid: str
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    import soundfile as sf
    import torch

    from codec_bridge.audio import Skip, load
    from codec_bridge.training.losses import log_mel_distance, si_snr

    try:
        wav = load(path, codec.sample_rate, codec.channels, max_seconds=3600.0, min_samples=1)
    except Skip as e:
        raise BridgeError(f"{path}: cannot resynthesize ({e})") from None
    codes = codec.encode([wav])[0]
    out = codec.decode(codes)[..., : wav.shape[-1]]
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        sf.write(Path(out_dir) / f"{uid}.wav", out.numpy().T, codec.sample_rate, subtype="PCM_16")
    row = {
        "hyp": asr_.transcribe(out.numpy(), codec.sample_rate),
        "duration_ratio": out.shape[-1] / codec.sample_rate / seconds,
        "log_mel_distance": log_mel_distance(out, wav, codec.sample_rate),
        "si_snr": si_snr(out, torch.as_tensor(wav)),
    }
    return row, codes, out.numpy()


def _ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """WER of each set over the set it is judged against (None when that WER is 0)."""

    def ratio(a: str, b: str) -> float | None:
        if a not in summary or b not in summary or summary[b]["wer"] == 0:
            return None
        return summary[a]["wer"] / summary[b]["wer"]

    out = {}
    if "resynthesis" in summary:
        out["resynthesis_over_original"] = ratio("resynthesis", "original")
    if "synthesis" in summary:
        out["synthesis_over_original"] = ratio("synthesis", "original")
        if "resynthesis" in summary:
            out["synthesis_over_resynthesis"] = ratio("synthesis", "resynthesis")
    return out


def evaluate_corpus(
    format: str,
    input: str | Path,
    *,
    limit: int | None = None,
    weights: str | None = None,
    model: str = "24khz",
    bandwidth: float | None = None,
    speaker: bool = True,
    speaker_refs: str | Path | None = None,
    speaker_refs_format: str = "manifest",
    **kwargs: Any,
) -> dict[str, Any]:
    """`evaluate` on a corpus a bridge reader understands; ``weights`` loads the codec. The
    error rates are split by the voices the corpus names, and the voices judged (unless not
    ``speaker``), against ``speaker_refs`` (a corpus of format ``speaker_refs_format``) when
    given."""
    corpus = [it for it in read_corpus(format, input)[:limit] if it.text and it.path.is_file()]
    items = [(it.id, it.normalized or it.text, it.path) for it in corpus]
    kwargs.update(speakers=[it.speaker for it in corpus], speaker_judge=speaker)
    if speaker_refs is not None:
        if not speaker:
            raise BridgeError("--speaker-refs and --no-speaker: choose one")
        kwargs["speaker_refs"] = reference_clips(speaker_refs_format, speaker_refs)
    codec = None
    if weights is not None:
        from codec_bridge.codec import load_codec

        codec = load_codec(model, weights, device=kwargs.get("device", "cpu"))
        codec.set_bandwidth(bandwidth if bandwidth is not None else max(codec.spec.bandwidths))
    report = evaluate(items, codec=codec, **kwargs)
    report["corpus"] = {"format": format, "input": str(input), "utterances": len(items)}
    return report


def format_table(report: dict[str, Any]) -> str:
    """The sets side by side, one line each (what the CLI prints and a report can show)."""
    cols = ("wer", "cer", "nearest_own_text", "duration_ratio", "log_mel_distance", "si_snr")
    head = f"{'set':<12}" + "".join(f"{c:>18}" for c in cols)
    lines = [f"ASR: {report['asr']['engine']}, vocabulary {report['asr']['vocabulary']}", head]
    for name, s in report["sets"].items():
        cells = "".join(f"{s[c]:>18.3f}" if c in s else f"{'-':>18}" for c in cols)
        lines.append(f"{name:<12}{cells}")
    lines += _voice_table(report["sets"])
    if "speaker" in report:
        lines += _speaker_table(report["speaker"])
    return "\n".join(lines)


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(r[c]) for r in rows) + 2 for c in range(len(rows[0]))]
    return [
        r[0].ljust(widths[0]) + "".join(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))
        for r in rows
    ]


def _voice_table(sets: dict[str, dict[str, Any]]) -> list[str]:
    """Per voice and set: WER / CER over that voice's utterances (none for a single voice)."""
    voices = sorted({v for s in sets.values() for v in s.get("voices", {})})
    if not voices:
        return []
    rows = [["voice", *sets]]
    for voice in ["all", *voices]:
        figures = [s if voice == "all" else s["voices"].get(voice) for s in sets.values()]
        rows.append([voice, *(f"{f['wer']:.3f} / {f['cer']:.3f}" if f else "-" for f in figures)])
    return ["ASR per voice: WER / CER", *_aligned(rows)]


def _speaker_table(section: dict[str, Any]) -> list[str]:
    """Per voice and set: mean SIM to the intended voice / nearest-voice accuracy, and the
    voice most often taken for it when that is another."""
    if "skipped" in section:
        return [f"Speaker: skipped, {section['skipped']}"]
    sets = section["sets"]

    def cell(f: dict[str, Any] | None, voice: str) -> str:
        if f is None:
            return "-"
        sim = "-" if f.get("sim") is None else f"{f['sim']:.3f}"
        wrong = [(v, n) for v, n in f.get("taken_for", {}).items() if v != voice]
        other = f" ({wrong[0][0]} x{wrong[0][1]})" if wrong else ""
        return f"{sim} / {f['nearest_voice']:.2f}{other}"

    voices = sorted({v for f in sets.values() for v in f["voices"]})
    rows = [["voice", *(f"{n} SIM / nearest" for n in sets)]]
    for voice in ["all", *voices]:
        figures = [f if voice == "all" else f["voices"].get(voice) for f in sets.values()]
        rows.append([voice, *(cell(f, voice) for f in figures)])
    head = (
        f"Speaker: {section['engine']} {section['version']} (sha256 {section['sha256'][:12]}), "
        f"{len(section['voices'])} voices; {section['references']}"
    )
    return [head, *_aligned(rows)]
