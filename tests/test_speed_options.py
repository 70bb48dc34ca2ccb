"""Speed options keep the maths: torch.compile, channels-last, data-wait accounting (no timing assertions)."""

from __future__ import annotations

import pytest
import torch

from fusion.training.setup import build_datamodule, build_module
from fusion.training.throughput import DataWaitMonitor
from tests.helpers.config import tiny_config


class _Clock:
    """A stand-in for time.perf_counter that the test advances by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_data_wait_monitor_splits_epoch_time_into_waiting_and_computing(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("fusion.training.throughput.time.perf_counter", clock)
    monitor = DataWaitMonitor()
    monitor.on_train_epoch_start(None, None)
    # batch 0: 5 s start-up wait, 1 s step; batches 1 and 2: 0.5 s wait, 1 s step each (4 samples a batch)
    for wait, step in ((5.0, 1.0), (0.5, 1.0), (0.5, 1.0)):
        clock.now += wait
        monitor.on_train_batch_start(None, None, None, 0)
        clock.now += step
        monitor.on_train_batch_end(None, None, None, {"id": ["a", "b", "c", "d"]}, 0)
    figures = monitor.summary()
    assert figures["time/first_batch_seconds"] == pytest.approx(5.0)
    assert figures["time/data_wait_fraction"] == pytest.approx(1.0 / 4.0)  # 1 s waiting of 4 s after batch 0
    assert figures["time/train_samples_per_second"] == pytest.approx(12 / 9.0)
    monitor.on_train_epoch_start(None, None)
    assert monitor.batches == 0 and monitor.summary()["time/data_wait_fraction"] == 0.0


@pytest.mark.slow
def test_compiled_network_computes_what_the_eager_one_does(processed_dir, tmp_path):
    """model.compile.enabled compiles the network in place: same outputs, same parameter names."""
    cfg = tiny_config(tmp_path, processed_dir, ["modality=text+audio", "fusion=late", "model.dropout=0.0"])
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    eager = build_module(cfg, datamodule).eval()
    cfg.model.compile.enabled = True
    compiled = build_module(cfg, datamodule).eval()
    compiled.load_state_dict(eager.state_dict())
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints stay interchangeable
    batch = next(iter(datamodule.val_dataloader()))
    with torch.no_grad():
        expected = eager(batch)
        got = compiled(batch)
    assert compiled.net._compiled_call_impl is not None
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_channels_last_image_encoder_gives_the_same_outputs(processed_dir, tmp_path):
    """The channels_last=true model (NHWC weights) computes what the same weights in the default layout do."""

    def image_module(channels_last: bool):
        cfg = tiny_config(
            tmp_path,
            processed_dir,
            ["modality=image", "fusion=late", "model.dropout=0.0", f"model.image.channels_last={channels_last}"],
        )
        return build_module(cfg, datamodule).eval()

    torch.manual_seed(0)
    datamodule = build_datamodule(tiny_config(tmp_path, processed_dir, ["modality=image"]))
    fast, reference = image_module(True), image_module(False)
    reference.load_state_dict(fast.state_dict())
    for module, expected in ((fast, True), (reference, False)):
        weight = next(p for p in module.net.encoders["image"].backbone.parameters() if p.dim() == 4)
        assert weight.is_contiguous(memory_format=torch.channels_last) is expected
    batch = next(iter(datamodule.val_dataloader()))
    with torch.no_grad():
        torch.testing.assert_close(fast(batch), reference(batch), atol=1e-5, rtol=1e-5)
