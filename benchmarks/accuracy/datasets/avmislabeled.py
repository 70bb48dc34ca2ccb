"""avmislabeled: avnoisy with a fifth of its annotations wrong. Do the defaults hold when labels are noisy?

Everything is made as avnoisy makes it (its own records and split pools), except the manifest's labels: a fifth of
the training and validation records name another digit than the one their image, recording and caption show,
drawn uniformly (symmetric noise, as hurried crowd annotation gives; plan.mislabel). The test split keeps the
true labels, so test accuracy measures the truth a model recovers; validation, as a user's would be, is noisy.
latent.jsonl's given_label marks the mislabeled records. The Bayes bounds are avnoisy's: they are for the test
split.
"""

from __future__ import annotations

from benchmarks.accuracy.datasets.avnoisy import AVNoisy

LABEL_NOISE = 0.2


class AVMislabeled(AVNoisy):
    name = "avmislabeled"
    summary = "avnoisy with a fifth of the training and validation labels wrong (test labels true)"
    label_noise = LABEL_NOISE
