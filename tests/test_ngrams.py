"""Character n-gram tokenizer (preprocess.text.tokenizer=ngram): the n-grams against hand-written lists, the
vocabulary's order, typo robustness, saving, and the text stage end to end."""

import json

import pytest
import torch

from fusion.config import compose
from fusion.data.manifest import load_manifest
from fusion.data.shards import ModalityShards
from fusion.models.builder import build_encoder
from fusion.preprocess.common import run_preprocess
from fusion.preprocess.ngrams import PAD, UNK, CharNgramTokenizer, is_saved_ngram_tokenizer
from fusion.preprocess.text import TextProcessor


def test_grams_of_a_word_by_hand():
    tokenizer = CharNgramTokenizer([PAD, UNK], min_n=2, max_n=3)
    assert tokenizer.grams("Ab, c") == [
        "<ab>",
        "<a",
        "ab",
        "b>",
        "<ab",
        "ab>",
        "<c>",
        "<c",
        "c>",
    ]  # "<c>" is its own 3-gram: kept once
    assert tokenizer.grams("ＡＢ") == tokenizer.grams("ab")  # NFKC: full-width letters are letters
    assert CharNgramTokenizer([PAD, UNK], 2, 3, lowercase=False).grams("Ab")[0] == "<Ab>"


def test_vocabulary_counts_texts_not_repeats_and_breaks_ties_alphabetically():
    texts = ["aa aa aa", "ab", "ab", "ba"]
    tokenizer = CharNgramTokenizer.train(texts, vocab_size=100, min_frequency=1, min_n=2, max_n=2)
    # texts holding each n-gram ("aa aa aa" counts once): <a in three, <ab>, a>, ab, b> in two, the rest in one
    counts = {"<a": 3, "ab": 2, "b>": 2, "<ab>": 2, "aa": 1, "a>": 2, "<aa>": 1, "<b": 1, "ba": 1, "<ba>": 1}
    expected = sorted(counts, key=lambda g: (-counts[g], g))
    assert tokenizer.vocab == [PAD, UNK, *expected]
    capped = CharNgramTokenizer.train(texts, vocab_size=4, min_frequency=2, min_n=2, max_n=2)
    assert capped.vocab == [PAD, UNK, "<a", "<ab>"]  # "<" sorts before letters
    again = CharNgramTokenizer.train(list(reversed(texts)), vocab_size=100, min_frequency=1, min_n=2, max_n=2)
    assert again.vocab == tokenizer.vocab


def test_a_typo_keeps_most_of_the_word():
    tokenizer = CharNgramTokenizer.train(["seven", "eleven", "six"], vocab_size=1000, min_frequency=1, min_n=2, max_n=4)
    seven, typo = set(tokenizer.encode("seven").ids), set(tokenizer.encode("sevn").ids)
    assert tokenizer.token_to_id("<seven>") in seven and tokenizer.token_to_id("<sevn>") is None
    assert len(seven & typo) >= 4 and {tokenizer.id_to_token(i) for i in seven & typo} >= {"<s", "<se", "se", "ev"}


def test_encode_keeps_each_known_gram_once_in_order_and_unk_for_unseen_words():
    tokenizer = CharNgramTokenizer.train(["ab"], vocab_size=100, min_frequency=1, min_n=2, max_n=2)
    ids = tokenizer.encode("ab zz ab").ids
    assert [tokenizer.id_to_token(i) for i in ids] == ["<ab>", "<a", "ab", "b>"]
    assert tokenizer.encode("zz").ids == [tokenizer.token_to_id(UNK)]
    assert tokenizer.encode("?!").ids == []  # no word at all: the text stage rejects it ("no tokens")


def test_saved_tokenizer_round_trips_and_is_told_apart_from_a_bpe_file():
    tokenizer = CharNgramTokenizer.train(["héllo wörld"], vocab_size=50, min_frequency=1, min_n=2, max_n=3)
    loaded = CharNgramTokenizer.from_str(tokenizer.to_str())
    assert loaded.vocab == tokenizer.vocab and loaded.encode("hello").ids == tokenizer.encode("hello").ids
    assert is_saved_ngram_tokenizer(tokenizer.to_str())
    assert not is_saved_ngram_tokenizer(json.dumps({"model": {"type": "BPE"}})) and not is_saved_ngram_tokenizer("{")


def test_text_stage_with_ngrams_writes_tokens_a_model_reads(sample_root, tmp_path):
    cfg = compose(
        [
            f"data.root={sample_root}",
            f"data.processed_dir={tmp_path}",
            "preprocess.num_workers=1",
            "model.text.tokenizer=ngram",
        ]
    )
    assert cfg.preprocess.text.tokenizer == "ngram"  # the text stage follows the model's tokenizer
    run_preprocess("text", cfg)
    meta = json.loads((tmp_path / "text" / "meta.json").read_text(encoding="utf-8"))
    assert meta["tokenizer"] == "ngram" and meta["max_len"] == cfg.preprocess.text.ngrams.max_len
    assert meta["pad_id"] == 0 and 2 < meta["vocab_size"] <= cfg.preprocess.text.ngrams.vocab_size

    manifest = load_manifest(sample_root, cfg.data.manifest, cfg.data.split, stage="test")
    record = next(r for r in manifest.records if r.has("text") and r.split == "test")
    restored = TextProcessor(cfg.preprocess.text, sample_root, cfg.data.dirs.text)
    restored.load(tmp_path / "text")  # as serving and the robustness stage restore it
    lengths = meta["lengths"]  # token counts of the first length_probe training texts, before the cut
    assert lengths["probed"] == min(meta["summary"]["kept"]["train"], cfg.preprocess.text.length_probe)
    train = [r for r in manifest.records if r.has("text") and r.split == "train"][: lengths["probed"]]
    counts = [len(restored.tokenizer.encode(restored.read(r)).ids) for r in train]
    assert lengths["longer_than_max_len"] == sum(c > meta["max_len"] for c in counts)
    assert lengths["longest"] == max(counts)
    past = sum(max(0, c - meta["max_len"]) for c in counts) / sum(counts)
    assert lengths["share_past_max_len"] == pytest.approx(past, abs=1e-4)
    stored = ModalityShards(tmp_path / "text").get(record.id)["tokens"]
    assert torch.equal(stored, restored.process(record)["tokens"]) and len(set(stored.tolist())) == len(stored)

    encoder = build_encoder("text", dict(cfg.model), meta)
    tokens = stored[None].long()
    out, mask = encoder(
        {
            "tokens": tokens,
            "mask": torch.ones_like(tokens, dtype=torch.bool),
            "present": torch.ones(1, dtype=torch.bool),
        }
    )
    assert out.shape == (1, len(stored), cfg.model.dim) and mask.all()

    with pytest.raises(ValueError, match="tokenized with 'ngram'"):
        build_encoder("text", {**dict(cfg.model), "text": {**dict(cfg.model.text), "tokenizer": "bpe"}}, meta)


def test_train_counts_the_grams_the_vocabulary_could_hold():
    texts = ["ab", "ab", "cd"]  # <ab> <a ab b> <ab ab> appear in 2 texts; cd's grams in 1
    tokenizer = CharNgramTokenizer.train(texts, vocab_size=4, min_frequency=2, min_n=2, max_n=3)
    assert tokenizer.eligible == 6 and tokenizer.get_vocab_size() == 4  # [PAD], [UNK] and 2 of the 6


def test_a_full_vocabulary_is_reported_with_its_knob(capsys):
    texts = ["ab", "ab", "cd"]
    grams = {"min_frequency": 2, "alpha": 0.01}
    processor = _text_processor(max_len=128, probe=10)
    processor._report_vocabulary(CharNgramTokenizer.train(texts, 4, 2, 2, 3), grams, "frequency", "frequency")
    assert "keeps the 2 most frequent of 6 candidate" in capsys.readouterr().out
    assert processor.vocabulary == {"select": "frequency", "method": "frequency", "eligible": 6, "kept": 2}
    processor._report_vocabulary(CharNgramTokenizer.train(texts, 8, 2, 2, 3), grams, "frequency", "frequency")
    assert capsys.readouterr().out == ""  # all 6 kept


def _text_processor(max_len: int, probe: int) -> TextProcessor:
    cfg = compose([f"preprocess.text.ngrams.max_len={max_len}", f"preprocess.text.length_probe={probe}"])
    return TextProcessor(cfg.preprocess.text, ".", "text")


def test_lengths_are_counted_before_the_cut_and_a_long_text_is_warned_of(capsys):
    tokenizer = CharNgramTokenizer.train(["ab", "ab cd", "ab cd ef"], vocab_size=100, min_frequency=1, min_n=2, max_n=2)
    processor = _text_processor(max_len=5, probe=10)
    processor.measure_lengths(tokenizer, ["ab", "ab cd", "ab cd ef"])  # 4, 8 and 12 grams (<ab> <a ab b> ...)
    past = round((3 + 7) / (4 + 8 + 12), 4)  # 3 and 7 of the 24 n-grams fall past max_len
    assert processor.lengths == {
        "probed": 3,
        "longer_than_max_len": 2,
        "p95": 12,
        "longest": 12,
        "share_past_max_len": past,
    }
    warning = capsys.readouterr().out
    assert "2 of 3 training texts" in warning and "preprocess.text.ngrams.max_len" in warning

    processor = _text_processor(max_len=12, probe=10)
    processor.measure_lengths(tokenizer, ["ab", "ab cd", "ab cd ef"])
    assert processor.lengths["longer_than_max_len"] == 0 and capsys.readouterr().out == ""
