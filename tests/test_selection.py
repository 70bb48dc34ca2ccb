"""Label-dependent n-gram vocabulary (preprocess.text.ngrams.select=chi2): the test's p-values against SciPy's
chi-squared test of independence, the vocabulary it keeps, and the text stage's report of it."""

import json
import random

import pytest
from scipy.stats import chi2_contingency

from fusion.config import compose
from fusion.preprocess.common import run_preprocess
from fusion.preprocess.ngrams import PAD, UNK, CharNgramTokenizer
from fusion.preprocess.selection import ClassCounts, dependence_p_values, label_groups
from fusion.preprocess.text import TextProcessor


def _table(token_sets, groups, token, classes):
    """classes × (present, absent) counts of a token, by hand."""
    return [
        [sum(token in s and name in g for s, g in zip(token_sets, groups, strict=True)) for name in classes],
        [sum(token not in s and name in g for s, g in zip(token_sets, groups, strict=True)) for name in classes],
    ]


def _counted(token_sets, groups, classes):
    counts = ClassCounts(classes)
    for token_set, group in zip(token_sets, groups, strict=True):
        counts.add(token_set, group)
    return counts


def _random_texts(seed, n=60, classes="abc"):
    rng = random.Random(seed)
    labels = [rng.choice(classes) for _ in range(n)]
    # "x" follows class a, "y" is noise, "z" is in nearly every text
    token_sets = [
        {
            t
            for t, keep in (("x", rng.random() < (0.8 if y == "a" else 0.1)), ("y", rng.random() < 0.3), ("z", True))
            if keep
        }
        for y in labels
    ]
    token_sets[0].discard("z")
    return token_sets, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_class_a_text_matches_scipy_chi2_contingency(seed):
    token_sets, labels = _random_texts(seed)
    classes, groups = label_groups(labels)
    tokens = ["x", "y", "z"]
    ours = dependence_p_values(_counted(token_sets, groups, classes), tokens)
    for token, p in zip(tokens, ours, strict=True):
        reference = chi2_contingency(_table(token_sets, groups, token, classes), correction=False).pvalue
        assert p == pytest.approx(reference, rel=1e-9, abs=1e-12), token
    assert ours[0] < 1e-6 < 0.01 < ours[1]  # the class word depends on the label, the noise does not


def test_several_classes_a_text_take_the_smallest_two_by_two_p_value_times_the_classes():
    token_sets, labels = _random_texts(3)
    groups = [[y] + (["extra"] if i % 3 == 0 else []) for i, y in enumerate(labels)]  # a class that overlaps
    classes = sorted({name for g in groups for name in g})
    ours = dependence_p_values(_counted(token_sets, groups, classes), ["x", "y"])
    for token, p in zip(["x", "y"], ours, strict=True):
        tables = [
            [
                [
                    sum(token in s and name in g for s, g in zip(token_sets, groups, strict=True)),
                    sum(token in s and name not in g for s, g in zip(token_sets, groups, strict=True)),
                ],
                [
                    sum(token not in s and name in g for s, g in zip(token_sets, groups, strict=True)),
                    sum(token not in s and name not in g for s, g in zip(token_sets, groups, strict=True)),
                ],
            ]
            for name in classes
        ]
        smallest = min(chi2_contingency(t, correction=False).pvalue for t in tables)
        assert p == pytest.approx(min(1.0, smallest * len(classes)), rel=1e-9), token


def test_label_groups_by_task():
    assert label_groups(["b", "a", "b"]) == (["a", "b"], [["b"], ["a"], ["b"]])
    assert label_groups([["x", "y"], [], ["y", "y"]]) == (["x", "y"], [["x", "y"], [], ["y"]])
    assert label_groups([0.5, 2.0]) is None  # regression: no classes
    nothing = label_groups([[], []])  # multilabel records that all hold no class
    assert dependence_p_values(_counted([{"x"}, {"y"}], nothing[1], nothing[0]), ["x", "y"]) == [1, 1]


def test_chi2_vocabulary_keeps_the_words_that_tell_the_classes_apart():
    # each text: a class word, then filler every class shares, so the filler is the most frequent
    texts = [f"{word} filler common" for word in ["cat", "dog"] * 10]
    labels = ["pets-c", "pets-d"] * 10
    frequent = CharNgramTokenizer.train(texts, vocab_size=100, min_frequency=2, min_n=2, max_n=3)
    chosen = CharNgramTokenizer.train(
        texts, vocab_size=100, min_frequency=2, min_n=2, max_n=3, labels=labels, alpha=0.01
    )
    assert "<filler>" in frequent.vocab and "<filler>" not in chosen.vocab
    assert {"<cat>", "<dog>", "ca", "og"} <= set(chosen.vocab) and chosen.vocab[:2] == [PAD, UNK]
    assert chosen.eligible == frequent.eligible and chosen.dependent == len(chosen.vocab) - 2
    assert [chosen.id_to_token(i) for i in chosen.encode("a dog and its filler").ids][0] == "<dog>"
    capped = CharNgramTokenizer.train(texts, vocab_size=4, min_frequency=2, min_n=2, max_n=3, labels=labels, alpha=0.01)
    assert capped.vocab[2:] == chosen.vocab[2:4]  # the cap keeps the most dependent (equal p: most frequent, then A-Z)
    numeric = CharNgramTokenizer.train(
        texts, vocab_size=100, min_frequency=2, min_n=2, max_n=3, labels=[1.0, 2.0] * 10, alpha=0.01
    )
    assert numeric.vocab == frequent.vocab and numeric.dependent is None


TASK_LABELS = {  # the manifest label of an "up" / "down" record, per task
    "multiclass": {"up": "up", "down": "down"},
    "multilabel": {"up": ["up", "moved"], "down": ["down", "moved"]},
    "regression": {"up": 1.0, "down": -1.0},
}


def _long_texts_manifest(root, records=80, task="multiclass"):
    """Ten-word texts of shared filler with one class word among them (a long-text dataset in small)."""
    rng = random.Random(0)
    filler = "the value of each object in this table is kept as it was given".split()
    lines = []
    for i in range(records):
        label = ["up", "down"][i % 2]
        words = rng.sample(filler, 9)
        words.insert(rng.randrange(10), {"up": "rising", "down": "falling"}[label])
        lines.append({"id": f"r{i}", "label": TASK_LABELS[task][label], "text": " ".join(words)})
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


@pytest.mark.parametrize(
    "select, max_len, method",
    [
        ("chi2", 500, "chi2"),
        ("frequency", 20, "frequency"),
        ("auto", 20, "chi2"),
        ("auto", 60, "frequency"),  # some texts are cut, but by less than half of their n-grams
        ("auto", 500, "frequency"),
    ],
)
def test_text_stage_reports_how_it_chose_the_vocabulary(tmp_path, capsys, select, max_len, method):
    _long_texts_manifest(tmp_path)  # texts of 40-70 n-grams: max_len 20 drops most of them, auto selects by label
    cfg = compose(
        [
            f"data.root={tmp_path}",
            f"data.processed_dir={tmp_path / 'processed'}",
            "preprocess.num_workers=1",
            f"preprocess.text.ngrams.select={select}",
            f"preprocess.text.ngrams.max_len={max_len}",
        ]
    )
    run_preprocess("text", cfg)
    out = capsys.readouterr().out
    meta = json.loads((tmp_path / "processed" / "text" / "meta.json").read_text(encoding="utf-8"))
    vocabulary = meta["vocabulary"]
    assert vocabulary["select"] == select and vocabulary["method"] == method
    assert vocabulary["kept"] == meta["vocab_size"] - 2
    tokens = json.loads((tmp_path / "processed" / "text" / "tokenizer.json").read_text(encoding="utf-8"))["vocab"]
    assert "<rising>" in tokens and "<falling>" in tokens
    if method == "chi2":
        assert 0 < vocabulary["dependent"] == vocabulary["kept"] < vocabulary["eligible"]
        assert f"{vocabulary['dependent']} of the {vocabulary['eligible']} n-grams" in out
        assert f"p < {cfg.preprocess.text.ngrams.alpha:g}" in out
        assert "<table>" not in tokens and meta["lengths"]["longer_than_max_len"] < meta["lengths"]["probed"]
        assert ("select=auto" in out) == (select == "auto") and ("would drop" in out) == (select == "auto")
    else:
        assert vocabulary["kept"] == vocabulary["eligible"] and "dependent" not in vocabulary and "<table>" in tokens
        assert (meta["lengths"]["longer_than_max_len"] > 0) == (max_len < 500)
        assert (meta["lengths"]["share_past_max_len"] > 0.5) == (max_len == 20)


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_chi2_with_other_tasks(tmp_path, capsys, task):
    _long_texts_manifest(tmp_path, task=task)
    cfg = compose(
        [
            f"task={task}",
            f"data.root={tmp_path}",
            f"data.processed_dir={tmp_path / 'processed'}",
            "preprocess.num_workers=1",
            "preprocess.text.ngrams.select=chi2",
        ]
    )
    run_preprocess("text", cfg)
    out = capsys.readouterr().out
    vocabulary = json.loads((tmp_path / "processed" / "text" / "meta.json").read_text(encoding="utf-8"))["vocabulary"]
    tokens = json.loads((tmp_path / "processed" / "text" / "tokenizer.json").read_text(encoding="utf-8"))["vocab"]
    if task == "multilabel":  # "moved" is every record's: only up / down tell texts apart
        assert vocabulary["method"] == "chi2" and 0 < vocabulary["dependent"] < vocabulary["eligible"]
        assert "<rising>" in tokens and "<table>" not in tokens
    else:
        assert vocabulary["method"] == "frequency" and "<table>" in tokens
        assert "numeric labels (regression) have no classes" in out


def test_unknown_selection_is_named_with_the_choices(tmp_path):
    _long_texts_manifest(tmp_path, records=20)
    cfg = compose(
        [f"data.root={tmp_path}", f"data.processed_dir={tmp_path / 'p'}", "preprocess.text.ngrams.select=tfidf"]
    )
    with pytest.raises(ValueError, match="preprocess.text.ngrams.select='tfidf': choose one of auto, chi2, frequency"):
        run_preprocess("text", cfg)


def test_no_label_dependent_ngram_is_warned_of_with_both_fixes(capsys):
    texts, labels = ["same words"] * 20, ["a", "b"] * 10  # every text alike: nothing tells a from b
    tokenizer = CharNgramTokenizer.train(texts, 100, 2, 2, 3, labels=labels, alpha=0.01)
    assert tokenizer.vocab == [PAD, UNK] and tokenizer.dependent == 0 < tokenizer.eligible
    assert tokenizer.encode("same words").ids == [tokenizer.token_to_id(UNK)]
    processor = TextProcessor(compose([]).preprocess.text, ".", "text")
    processor._report_vocabulary(tokenizer, {"min_frequency": 2, "alpha": 0.01}, "chi2", "chi2")
    out = capsys.readouterr().out
    assert "no n-gram depends on the label" in out and "preprocess.text.ngrams.alpha" in out
    assert "select=frequency" in out and processor.vocabulary["dependent"] == 0
