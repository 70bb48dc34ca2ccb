"""Audio: soundfile decode, mix to mono, torchaudio resample to one rate, log-mel spectrogram.

Everything is computed in float64 and only the result is stored in float16: CPUs (and thread counts) differ in
the last bits of their float32 FFT and resampling kernels, which float16 rounding turned into different shards on
another machine; float64 differences (about 1e-13 here) almost never cross a float16 rounding step. The fitted
log-mel mean and std are exact sums (math.fsum) rounded to `stats_digits` significant digits, so meta.json is
identical too."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
import torch
import torchaudio

from fusion.data.manifest import Record, RecordError, resolve_file
from fusion.preprocess.lengths import auto_limit, check_auto_rule, length_summary, warn_of_cut
from fusion.preprocess.stats import exact_mean_std

WAV_UNKNOWN_SIZE = 0xFFFFFFFF  # the data chunk size a WAV writer that could not seek back leaves
SECONDS_DIGITS = 3  # decimals of the clip durations in meta.json's lengths (milliseconds)
AUTO = "auto"  # preprocess.audio.max_seconds: from the training clips' durations (auto_max_seconds)
AUTO_RULE = "preprocess.audio.auto_seconds"


COMPUTE = torch.float64  # the dtype of every step before the float16 that is stored


class AudioProcessor:
    """Decodes a record's audio file into a float16 log-mel spectrogram [n_mels, frames]."""

    modality = "audio"

    def __init__(self, cfg: Mapping[str, Any], root: Path, folder: str):
        self.cfg, self.root, self.folder = cfg, Path(root), folder
        self._mel: torchaudio.transforms.MelSpectrogram | None = None
        self.mean, self.std = 0.0, 1.0
        self.lengths: dict[str, float | int] | None = None  # set by fit: the probed training clips' durations
        self._max_seconds = fixed_max_seconds(cfg["max_seconds"])  # None for auto: set by fit or load
        if self._max_seconds is None:
            check_auto_rule(cfg["auto_seconds"], AUTO_RULE)

    @property
    def rate(self) -> int:
        return int(self.cfg["sample_rate"])

    @property
    def max_seconds(self) -> float:
        """The seconds kept of each clip: the configured number, or what fit chose (load restores it)."""
        if self._max_seconds is None:
            raise RuntimeError(
                "preprocess.audio.max_seconds is auto: fit the audio processor on training clips (or load a fitted "
                "one's meta.json) before decoding audio"
            )
        return self._max_seconds

    @property
    def max_samples(self) -> int:
        return int(round(self.max_seconds * self.rate))

    @property
    def mel(self) -> torchaudio.transforms.MelSpectrogram:
        if self._mel is None:  # built lazily, once per worker process
            self._mel = mel_transform(
                self.rate,
                int(self.cfg["n_fft"]),
                int(self.cfg["hop_length"]),
                int(self.cfg["n_mels"]),
                float(self.cfg["f_min"]),
                None if self.cfg["f_max"] is None else float(self.cfg["f_max"]),
            )
        return self._mel

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_mel": None}

    def fit(self, records: list[Record]) -> None:
        """The durations of the first ``length_probe`` training clips (:meth:`measure_lengths`, which chooses an
        automatic ``max_seconds``); then the log-mel mean and std over (a seeded subset of) the training split,
        for standardisation."""
        self.measure_lengths(records[: int(self.cfg["length_probe"])])
        self.fit_standardisation(records)

    def fit_standardisation(self, records: list[Record]) -> None:
        """Log-mel mean and std over (a seeded subset of) the training split."""
        rng = np.random.default_rng(int(self.cfg["norm_seed"]))
        count = min(len(records), int(self.cfg["norm_records"]))
        values = []
        for index in rng.choice(len(records), size=count, replace=False):
            try:
                values.append(self.log_mel(records[index]).flatten().numpy())
            except RecordError:
                continue  # rejected with its reason when the record itself is processed
        if values:
            self.mean, self.std = exact_mean_std(np.concatenate(values), int(self.cfg["stats_digits"]))

    def measure_lengths(self, records: list[Record]) -> None:
        """The clips' durations in seconds, read from their headers (nothing is decoded); an automatic
        ``max_seconds`` is chosen from them (:func:`auto_max_seconds`). Then their summary against ``max_seconds``
        into meta.json's ``lengths``, and a warning naming the knob when some are longer: only the first
        ``max_seconds`` of a clip are kept, and what is said after them is lost."""
        seconds = []
        for record in records:
            try:
                info = sf.info(str(resolve_file(self.root, record.audio, self.folder)))
            except (RecordError, sf.LibsndfileError, RuntimeError, ValueError, TypeError):
                continue  # rejected with its reason when the record itself is processed
            if info.samplerate > 0:
                seconds.append(round(info.frames / info.samplerate, SECONDS_DIGITS))
        if fixed_max_seconds(self.cfg["max_seconds"]) is None:
            rule = self.cfg["auto_seconds"]
            self._max_seconds = auto_max_seconds(seconds, rule)
            print(
                f"[preprocess_audio] preprocess.audio.max_seconds=auto: {self._max_seconds:g} s, the "
                f"{float(rule['quantile']):g} quantile of {len(seconds)} training clips' durations rounded up to "
                f"{float(rule['step']):g} s, within [{float(rule['min']):g}, {float(rule['max']):g}] s "
                f"(preprocess.audio.auto_seconds)",
                flush=True,
            )
        limit = self.max_seconds
        self.lengths = length_summary(seconds, limit, "max_seconds")
        note = " (the audio model's cost grows with it)"
        warn_of_cut("preprocess_audio", self.lengths, limit, "preprocess.audio.max_seconds", "clips", "seconds", note)

    def load_waveform(self, path: Path) -> torch.Tensor:
        """Mono float64 waveform at the target rate, cropped to max_seconds: only that prefix of the file is
        decoded, so a very long file costs no more than a short one."""
        seconds = self.max_seconds
        try:
            with sf.SoundFile(str(path)) as stream:
                self.check_rate(stream.samplerate)
                wanted = min(stream.frames, math.ceil(seconds * stream.samplerate))
                data, rate = stream.read(frames=wanted, dtype="float64", always_2d=True), stream.samplerate
        except sf.LibsndfileError as exc:
            raise RecordError(f"cannot decode audio: {exc.error_string}") from None
        except (RuntimeError, ValueError, TypeError) as exc:
            raise RecordError(f"cannot decode audio: {exc}") from None
        missing = wav_missing_bytes(path)
        if missing:
            raise RecordError(
                f"audio file is truncated: its header declares {missing} more bytes of samples "
                f"than the file holds; re-export or re-copy it"
            )
        if data.shape[0] < wanted:
            raise RecordError(
                f"audio file is truncated: only {data.shape[0]} of the {wanted} frames its header "
                f"declares decode; re-export or re-copy it"
            )
        if data.shape[0] == 0:
            raise RecordError("audio has zero samples (a valid header without frames)")
        if not np.isfinite(data).all():
            raise RecordError("audio contains NaN or Inf samples")
        wave = torch.from_numpy(data.mean(axis=1))
        if rate != self.rate:
            wave = torchaudio.functional.resample(wave, orig_freq=rate, new_freq=self.rate)
        wave = wave[: self.max_samples]
        min_samples = int(self.cfg["n_fft"])  # shorter clips are zero-padded to one window
        if wave.numel() < min_samples:
            wave = torch.nn.functional.pad(wave, (0, min_samples - wave.numel()))
        return wave

    def check_rate(self, rate: int) -> None:
        """Reject a sample rate outside [min_sample_rate, max_sample_rate], or one whose ratio to sample_rate
        has a term over max_ratio_terms in lowest terms: torchaudio's resampling filter has about their
        product in coefficients (44101 Hz to 16 kHz: 700 million, 12 GB)."""
        low, high = int(self.cfg["min_sample_rate"]), int(self.cfg["max_sample_rate"])
        if rate < low:
            raise RecordError(f"unsupported sample rate: {rate} Hz is below preprocess.audio.min_sample_rate={low}")
        if rate > high:
            raise RecordError(f"unsupported sample rate: {rate} Hz is above preprocess.audio.max_sample_rate={high}")
        gcd, limit = math.gcd(rate, self.rate), int(self.cfg["max_ratio_terms"])
        if max(rate, self.rate) // gcd > limit:
            raise RecordError(
                f"unsupported sample rate: {rate} Hz has no small ratio to {self.rate} Hz "
                f"({self.rate // gcd}/{rate // gcd}, a term over preprocess.audio.max_ratio_terms="
                f"{limit}); re-encode the file at a standard rate"
            )

    def log_mel(self, record: Record) -> torch.Tensor:
        return self.wave_log_mel(self.load_waveform(resolve_file(self.root, record.audio, self.folder)))

    def wave_log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """The float64 log-mel of a waveform (any float dtype)."""
        return torch.log(self.mel(wave.to(COMPUTE)) + float(self.cfg["log_eps"]))

    def process(self, record: Record) -> dict[str, torch.Tensor]:
        """Standardised log-mel, so that zero padding equals the training mean."""
        return self.features(self.load_waveform(resolve_file(self.root, record.audio, self.folder)))

    def features(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored item of a loaded waveform (also used on noisy waveforms by the robustness stage)."""
        return {"mel": ((self.wave_log_mel(wave) - self.mean) / self.std).to(torch.float16)}

    def meta(self) -> dict[str, Any]:
        return {
            "n_mels": int(self.cfg["n_mels"]),
            "max_seconds": self.max_seconds,
            "max_frames": self.max_samples // int(self.cfg["hop_length"]) + 1,
            "sample_rate": self.rate,
            "hop_length": int(self.cfg["hop_length"]),
            "log_mel_mean": self.mean,
            "log_mel_std": self.std,
            **({"lengths": self.lengths} if self.lengths is not None else {}),
        }

    def save(self, out_dir: Path) -> None:
        """No state beyond the parameters, which meta.json records."""

    def load(self, out_dir: Path) -> None:
        """Restore the fitted log-mel mean and std, and the seconds kept of a clip, from ``out_dir``/meta.json (one
        written before meta.json held them keeps the configured number)."""
        path = Path(out_dir) / "meta.json"
        meta = json.loads(path.read_text(encoding="utf-8"))
        self.mean, self.std = float(meta["log_mel_mean"]), float(meta["log_mel_std"])
        if "max_seconds" in meta:
            self._max_seconds = float(meta["max_seconds"])
        elif self._max_seconds is None:
            raise ValueError(
                f"{path} does not say how many seconds of a clip it kept (written by an older version) and "
                f"preprocess.audio.max_seconds is auto: rerun the preprocess_audio stage, or set max_seconds"
            )


def fixed_max_seconds(value: Any) -> float | None:
    """``preprocess.audio.max_seconds`` as a positive number of seconds, or None for ``auto``."""
    if value == AUTO:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"preprocess.audio.max_seconds must be a positive number of seconds or auto, got {value!r}")
    return seconds


def auto_max_seconds(seconds: list[float], rule: Mapping[str, Any]) -> float:
    """:func:`~fusion.preprocess.lengths.auto_limit` of the clips' durations in seconds. The median (the default
    rule's quantile) covers the typical clip: longer crops of short clips only add padding, and on the benchmark's
    spoken words they cost accuracy (docs/results.md)."""
    return round(auto_limit(seconds, rule, AUTO_RULE), SECONDS_DIGITS)


def mel_transform(
    sample_rate: int, n_fft: int, hop_length: int, n_mels: int, f_min: float, f_max: float | None
) -> torchaudio.transforms.MelSpectrogram:
    """torchaudio's MelSpectrogram (HTK mel scale, no normalisation) with its window and filterbank computed in
    COMPUTE: a float32 filterbank (cast to float64 afterwards) differed in its last bits between CPUs' vector units
    (1e-5 relative after the triangle slopes' cancellation). Built without switching torch's default dtype, which
    is process-wide: a served model preprocesses concurrent requests in threads, and such a switch made another
    request's tensors float64 (HTTP 500 under load)."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        f_min=f_min,
        f_max=f_max,
        wkwargs={"dtype": COMPUTE},
    ).to(COMPUTE)
    top = float(sample_rate // 2) if f_max is None else f_max
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=COMPUTE)
    mels = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(top), n_mels + 2, dtype=COMPUTE)
    points = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)  # the HTK mel scale's inverse
    widths = points[1:] - points[:-1]
    slopes = points.unsqueeze(0) - freqs.unsqueeze(1)
    down, up = (-1.0 * slopes[:, :-2]) / widths[:-1], slopes[:, 2:] / widths[1:]
    mel.mel_scale.fb.copy_(torch.clamp(torch.min(down, up), min=0.0))
    return mel


def _hz_to_mel(freq: float) -> float:
    return 2595.0 * math.log10(1.0 + (freq / 700.0))


def wav_missing_bytes(path: Path) -> int:
    """How many bytes of samples a RIFF/WAVE file's ``data`` chunk declares beyond the end of the file (0 for
    other formats, and for an unknown size). libsndfile reads what is there without an error, so this is
    how a truncated WAV is told apart from a short one."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        header = stream.read(12)
        if header[:4] != b"RIFF" or header[8:] != b"WAVE":
            return 0
        while len(chunk := stream.read(8)) == 8:
            name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                return 0 if length == WAV_UNKNOWN_SIZE else max(0, stream.tell() + length - size)
            stream.seek(length + length % 2, 1)  # chunks are padded to an even length
    return 0
