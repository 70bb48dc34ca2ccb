"""avlongtail: avnoisy with a long tail of classes. Do the defaults hold when some classes are rare?

Everything is made as avnoisy makes it (its own records and split pools), except the labels: the classes' shares
fall geometrically from the first digit to the last, which is ten times rarer (367 records of "zero" to 37 of
"nine" out of 1,500; plan.class_shares), as product catalogues, clinical codes and meme labels are. The splits
keep the proportions, so the test split is as unbalanced as the training one: accuracy rewards the frequent
classes, macro-F1 weighs every class alike. The Bayes bounds guess the most frequent candidate class.
"""

from __future__ import annotations

from benchmarks.accuracy.datasets.avnoisy import AVNoisy

CLASS_RATIO = 10.0


class AVLongTail(AVNoisy):
    name = "avlongtail"
    summary = "avnoisy with long-tailed classes: each digit rarer than the last, nine 10 times rarer than zero"
    class_ratio = CLASS_RATIO
