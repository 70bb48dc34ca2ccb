"""SDPA vs plain matmul-softmax attention (the project's Attention layer), forward+backward, over sequence length.

On CPU each (implementation, mask, length) case runs in a fresh process, `python -m benchmarks.attention --one
'<json>'`, so its peak resident memory is its own; this module therefore imports little besides torch and the layer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Context, SectionResult, failed, median, short_error, synchronize, time_calls
from benchmarks.tables import MISSING, Table, ratio, times
from fusion.models.attention import Attention

SECTION = "attention"
IMPLEMENTATIONS = {"plain": False, "sdpa": True}  # name -> Attention(fused=...)
KIB, MIB = 2**10, 2**20
MILLISECONDS = 1e3
FLOAT32_BYTES = 4
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLEAR_REFS, RESET_PEAK_RSS = Path("/proc/self/clear_refs"), "5"
STATUS, HIGH_WATER_FIELD = Path("/proc/self/status"), "VmHWM:"
STATM = Path("/proc/self/statm")  # sizes in pages: total, resident, ...


def key_mask(batch: int, length: int, masked_fraction: float, device: torch.device) -> torch.Tensor:
    """Key padding mask [B, N] (True = valid): sample b keeps a prefix whose length falls evenly from N (first
    sample) to N × (1 - masked_fraction) (last), like a padded batch of sequences of different lengths."""
    keep = torch.linspace(length, length * (1 - masked_fraction), batch).round().clamp(min=1)
    return torch.arange(length)[None, :].lt(keep[:, None]).to(device)


def _rss_kib() -> int:
    """This process's current resident set, KiB (/proc/self/statm pages)."""
    pages = int(STATM.read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // KIB


def _high_water_kib() -> int:
    """The process's peak resident set, KiB: VmHWM of /proc/self/status (what clear_refs resets), else ru_maxrss.
    ru_maxrss also keeps the high-water mark recorded whenever a thread exits, which no reset lowers."""
    if STATUS.is_file():
        for line in STATUS.read_text().splitlines():
            if line.startswith(HIGH_WATER_FIELD):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_high_water() -> bool:
    """Lower the high-water mark to the current resident set (Linux: "5" into /proc/self/clear_refs), so an
    earlier transient peak (imports, the warm-up) cannot hide this call's growth; False where unsupported."""
    try:
        CLEAR_REFS.write_text(RESET_PEAK_RSS)
        return True
    except OSError:
        return False


def measure_case(case: dict[str, Any]) -> dict[str, Any]:
    """Median seconds of forward+backward of one Attention layer at one length, and its peak memory growth."""
    device = torch.device(case["device"])
    torch.manual_seed(int(case["seed"]))
    dim = int(case["heads"]) * int(case["head_dim"])
    layer = Attention(dim, int(case["heads"]), fused=IMPLEMENTATIONS[case["impl"]]).to(device)

    def inputs(length: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = torch.randn(int(case["batch"]), length, dim, device=device, requires_grad=True)
        mask = key_mask(int(case["batch"]), length, float(case["masked_fraction"]), device) if case["masked"] else None
        return x, mask

    def step(x: torch.Tensor, mask: torch.Tensor | None) -> None:
        layer(x, key_mask=mask).sum().backward()

    step(*inputs(int(case["warmup_length"])))  # kernels, thread pools, parameter gradients: not this case's cost
    x, mask = inputs(int(case["length"]))
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step(x, mask)
        synchronize(device)
        peak_bytes = torch.cuda.max_memory_allocated(device) - before
        slack_bytes, reset = 0, True
    else:
        reset = _reset_high_water()
        rss, high_water = _rss_kib(), _high_water_kib()
        step(x, mask)
        peak_bytes = (_high_water_kib() - high_water) * KIB
        slack_bytes = max(0, high_water - rss) * KIB  # the most the growth can under-count
    for _ in range(int(case["warmup"])):
        step(x, mask)
    seconds = time_calls(lambda: step(x, mask), int(case["repeats"]), device)
    return {
        "seconds": seconds,
        "median_ms": median(seconds) * MILLISECONDS,
        "peak_mib": peak_bytes / MIB,
        "slack_mib": slack_bytes / MIB,
        "peak_reset": reset,
    }


def run(ctx: Context) -> SectionResult:
    """Every implementation × mask × length: in-process on CUDA, one fresh subprocess per case on CPU."""
    settings = ctx.settings.attention
    cases: dict[str, dict[str, Any]] = {}
    for masked in settings.masks:
        for length in settings.lengths:
            for impl in IMPLEMENTATIONS:
                case = {
                    "impl": impl,
                    "masked": bool(masked),
                    "length": int(length),
                    "device": ctx.device.type,
                    **{
                        k: settings[k]
                        for k in (
                            "batch",
                            "heads",
                            "head_dim",
                            "repeats",
                            "warmup",
                            "warmup_length",
                            "masked_fraction",
                            "seed",
                        )
                    },
                }
                key = case_key(impl, bool(masked), int(length))
                try:
                    result = measure_case(case) if ctx.device.type == "cuda" else _in_subprocess(case, settings)
                except Exception as exc:  # e.g. out of memory at the longest length: recorded, the rest goes on
                    result = {"error": failed(short_error(exc, int(ctx.settings.report.error_chars)))}
                cases[key] = {**case, **result}
                ctx.console.progress(
                    SECTION,
                    f"{key}: "
                    + (
                        result["error"]
                        if "error" in result
                        else f"{result['median_ms']:.2f} ms, +{result['peak_mib']:.0f} MiB"
                    ),
                )
    tables = [_table(cases, settings, bool(masked), ctx.device) for masked in settings.masks]
    return SectionResult(
        figures={"cases": cases, "shape": {k: settings[k] for k in ("batch", "heads", "head_dim")}}, tables=tables
    )


def case_key(impl: str, masked: bool, length: int) -> str:
    return f"{impl}/{'masked' if masked else 'unmasked'}/{length}"


def _in_subprocess(case: dict[str, Any], settings) -> dict[str, Any]:
    """Run one case in a fresh interpreter and read its JSON line; its error text if it failed."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.attention", "--one", json.dumps(case)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=int(settings.case_timeout_seconds),
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _growth(cases: dict, impl: str, masked: bool, lengths: list[int], index: int, field: str) -> float | None:
    """This length's figure over the previous length's (how it grows when the length doubles)."""
    if index == 0:
        return None
    return ratio(
        cases[case_key(impl, masked, lengths[index])].get(field),
        cases[case_key(impl, masked, lengths[index - 1])].get(field),
    )


def _table(cases: dict, settings, masked: bool, device: torch.device) -> Table:
    lengths = [int(n) for n in settings.lengths]
    batch, heads = int(settings.batch), int(settings.heads)
    memory_note = (
        "peak MiB (CUDA): max_memory_allocated during the first forward+backward at that length minus the memory "
        "allocated before it (inputs, weights and weight gradients excluded)."
        if device.type == "cuda"
        else "peak MiB (CPU): each case runs in a fresh process. After its inputs exist and a warm-up forward+backward "
        f"at length {int(settings.warmup_length)} (thread pools, kernels, weight gradients), the high-water mark is "
        "reset to the current resident set (/proc/self/clear_refs); the figure is how far the first forward+backward "
        "at full length raises it (VmHWM; the input gradient included). Not ru_maxrss: it also keeps the peak "
        "recorded whenever a thread exits, which the reset cannot lower, so an earlier transient peak would hide "
        "growth below it (any slack left: slack_mib in the JSON). Under a few MiB can read 0: freed small blocks "
        "are reused without new pages."
    )
    table = Table(
        f"Attention forward+backward, {'key padding mask' if masked else 'no mask'} "
        f"(batch {batch}, {heads} heads, head_dim {int(settings.head_dim)}, fp32)",
        [
            "length",
            "plain ms",
            "×prev",
            "SDPA ms",
            "×prev",
            "SDPA faster by",
            "plain MiB",
            "×prev",
            "SDPA MiB",
            "×prev",
            "SDPA uses less by",
            "score matrix MiB",
        ],
        notes=[
            "fusion.models.attention.Attention(dim, heads, fused=False|True): the plain path (q @ kᵀ, masked_fill, "
            "softmax, @ v) vs torch.nn.functional.scaled_dot_product_attention, as the models run them; self-attention "
            f"of [B, N, {heads * int(settings.head_dim)}] incl. the q/kv/out projections; time = median of "
            f"{int(settings.repeats)} calls after the first full-length call (the memory measurement) and "
            f"{int(settings.warmup)} more warm-up(s). ×prev: ratio to the previous length (a doubling of the "
            "length: ~2x is linear, ~4x quadratic).",
            memory_note,
            "score matrix MiB: one fp32 [B, H, N, N] tensor (the plain path holds several).",
        ]
        + (
            [f"mask: the last up to {float(settings.masked_fraction):.0%} of keys padded, varying per sample."]
            if masked
            else []
        ),
    )
    for i, n in enumerate(lengths):
        plain, sdpa = cases[case_key("plain", masked, n)], cases[case_key("sdpa", masked, n)]
        if "error" in plain or "error" in sdpa:
            table.add(
                n,
                plain.get("error", plain.get("median_ms")),
                MISSING,
                sdpa.get("error", sdpa.get("median_ms")),
                *([MISSING] * 7),
                batch * heads * n * n * FLOAT32_BYTES / MIB,
            )
            continue
        table.add(
            n,
            plain["median_ms"],
            times(_growth(cases, "plain", masked, lengths, i, "median_ms")),
            sdpa["median_ms"],
            times(_growth(cases, "sdpa", masked, lengths, i, "median_ms")),
            times(ratio(plain["median_ms"], sdpa["median_ms"])),
            plain["peak_mib"],
            times(_growth(cases, "plain", masked, lengths, i, "peak_mib")),
            sdpa["peak_mib"],
            times(_growth(cases, "sdpa", masked, lengths, i, "peak_mib")),
            times(ratio(plain["peak_mib"], sdpa["peak_mib"])),
            batch * heads * n * n * FLOAT32_BYTES / MIB,
        )
    return table


def main(argv: list[str] | None = None) -> None:
    """`python -m benchmarks.attention --one '<case json>'`: measure one case, print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", required=True, help="the case as JSON (written by the attention section)")
    args = parser.parse_args(argv)
    print(json.dumps(measure_case(json.loads(args.one))))


if __name__ == "__main__":
    main()
