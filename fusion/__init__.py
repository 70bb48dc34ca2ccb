"""Attention-based multimodal fusion: text, image and audio, from raw files to tracked runs."""

import os

# OpenMP's default busy-wait made small CPU ops up to 100x slower on a 2-core machine when the
# autograd and main threads alternate (measured: layer norm fwd+bwd 48 ms vs 0.9 ms). Passive
# waiting must be set before torch loads OpenMP; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
