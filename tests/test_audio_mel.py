"""The log-mel transform of the audio stage: float64 window and filterbank equal to torchaudio's own float64 build,
made without switching torch's process-wide default dtype (served requests preprocess in concurrent threads: a
switch in one made another request's tensors float64, an HTTP 500 under load)."""

from __future__ import annotations

import threading

import pytest
import torch
import torchaudio

from fusion.preprocess.audio import COMPUTE, mel_transform

SETTINGS = [(16000, 400, 160, 64, 0.0, None), (8000, 256, 80, 40, 20.0, 3800.0), (22050, 1024, 256, 128, 0.0, None)]


def _torchaudio_in_float64(sample_rate, n_fft, hop_length, n_mels, f_min, f_max):
    """torchaudio's build with float64 as the default dtype (single-threaded here, so the switch is harmless)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(COMPUTE)
    try:
        return torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, f_min=f_min, f_max=f_max
        ).to(COMPUTE)
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("settings", SETTINGS)
def test_window_and_filterbank_equal_torchaudios_float64_build_bit_for_bit(settings):
    ours, reference = mel_transform(*settings), _torchaudio_in_float64(*settings)
    for name, tensor in reference.state_dict().items():
        assert ours.state_dict()[name].dtype == COMPUTE and torch.equal(ours.state_dict()[name], tensor), name
    wave = torch.randn(settings[0], generator=torch.Generator().manual_seed(0), dtype=COMPUTE)
    assert torch.equal(ours(wave), reference(wave))


def test_building_it_never_switches_the_default_dtype_seen_by_other_threads():
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.add(torch.get_default_dtype())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(50):
            mel_transform(*SETTINGS[0])
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert seen == {torch.float32}
