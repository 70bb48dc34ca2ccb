"""Speed options keep the maths: torch.compile, channels-last, data-wait accounting (no timing assertions)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from fusion.training.setup import build_datamodule, build_module, set_torch_flags
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
@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # the validation step, run without a Trainer
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
    # Evaluation logs the fused head and the vote of one pass: that pass runs compiled too, and computes the same.
    assert compiled.vote is not None
    inputs = {m: batch[m] for m in compiled.modalities}
    counters.clear()
    with torch.no_grad():
        compiled.validation_step(batch, 0)
        assert counters["frames"]["ok"] > 0  # the step's pass was compiled, not run around Dynamo
        every, reference = compiled.net(inputs, every_output=True), eager.net.predictions(inputs)
    torch.testing.assert_close(every.voted, reference.voted, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(every.fused, reference.fused, atol=1e-4, rtol=1e-4)


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


def _gradients(module, batch) -> list[torch.Tensor]:
    module.zero_grad()
    module.training_step(batch, 0).backward()
    return [p.grad.clone() for p in module.parameters() if p.grad is not None]


def test_uninitialised_memory_fill_is_off_by_default_and_changes_no_gradient(processed_dir, tmp_path, monkeypatch):
    """fill_uninitialized_memory (default false) sets torch's NaN fill of new tensors; a deterministic training
    step computes the same loss gradients with it on or off (the fill only exposes reads of garbage)."""
    monkeypatch.setattr(torch.utils.deterministic, "fill_uninitialized_memory", True)
    cfg = tiny_config(tmp_path, processed_dir, ["modality=text+image+audio", "model.dropout=0.0"])
    assert cfg.fill_uninitialized_memory is False
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule).train()
    module.log = module.log_dict = lambda *args, **kwargs: None
    module.augment, module.dropout_rates = None, {m: 0.0 for m in module.modalities}
    batch = next(iter(datamodule.val_dataloader()))
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        set_torch_flags(cfg)
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        without_fill = _gradients(module, batch)
        cfg.fill_uninitialized_memory = True
        set_torch_flags(cfg)
        assert torch.utils.deterministic.fill_uninitialized_memory is True
        with_fill = _gradients(module, batch)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert len(with_fill) == len(without_fill) > 0
    for a, b in zip(with_fill, without_fill, strict=True):
        assert torch.equal(a, b)
