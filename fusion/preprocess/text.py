"""Text: read inline or file text, tokenize it (character n-grams or a BPE tokenizer, both fitted on the training
split, or a pretrained model's own tokenizer), encode ids."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from fusion.data.manifest import Record, RecordError, resolve_file
from fusion.preprocess.lengths import auto_limit, check_auto_rule, length_summary, warn_of_cut
from fusion.preprocess.ngrams import NGRAM, CharNgramTokenizer, is_saved_ngram_tokenizer
from fusion.pretrained import BPE, HF_EXTRA_HINT, resolve_pretrained_path

PAD, UNK = "[PAD]", "[UNK]"
UTF8_MAX_BYTES = 4  # the most bytes one character takes in UTF-8
BOM = "\ufeff"
AUTO, CHI2, FREQUENCY = "auto", "chi2", "frequency"
SELECTIONS = (AUTO, CHI2, FREQUENCY)  # preprocess.text.ngrams.select: how the n-gram vocabulary is chosen
AUTO_RULE = "preprocess.text.auto_len"  # how preprocess.text.max_len=auto chooses (BPE and pretrained tokenizers)


def read_utf8_prefix(path: Path, max_chars: int) -> str:
    """The first `max_chars` characters of a UTF-8 file (a byte-order mark dropped), reading no more than
    4 bytes a character, so a huge file costs no more than a long one. Only the characters kept must be
    valid UTF-8: a bad byte after them, or a character cut by the read, is no error."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(UTF8_MAX_BYTES * (max_chars + len(BOM)))
    except OSError as exc:  # e.g. no permission to read it
        raise RecordError(f"cannot read text file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw[: exc.start].decode("utf-8")  # the valid part, enough when the bad byte lies past the limit
        if len(text.removeprefix(BOM)) < max_chars:
            raise RecordError(f"text is not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8") from None
    return text.removeprefix(BOM)[:max_chars]


def load_pretrained_tokenizer(spec: str, key: str = "preprocess.text.tokenizer") -> Tokenizer:
    """The fast tokenizer of a pretrained model folder (see :func:`resolve_pretrained_path`), with its
    stored padding and truncation switched off. Reads ``tokenizer.json`` with the ``tokenizers`` library;
    only a folder without one needs ``transformers`` (``AutoTokenizer``) to convert its vocabulary."""
    path = resolve_pretrained_path(spec, key)
    if (path / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    else:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ImportError(
                f"{key}={spec!r}: {path} has no tokenizer.json, converting its tokenizer needs "
                f"transformers; {HF_EXTRA_HINT}"
            ) from exc
        tokenizer = Tokenizer.from_str(
            AutoTokenizer.from_pretrained(str(path), local_files_only=True).backend_tokenizer.to_str()
        )
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def fixed_max_len(value: Any) -> int | None:
    """``preprocess.text.max_len`` as a positive number of tokens, or None for ``auto``."""
    if value == AUTO:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"preprocess.text.max_len must be a positive number of tokens or auto, got {value!r}")
    return value


def position_limit(folder: Path) -> int | None:
    """The positions a pretrained model folder's encoder has (config.json's ``max_position_embeddings``), or None
    when it does not say."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    return int(positions) if isinstance(positions, int) and positions > 0 else None


def _pad_id(tokenizer: Tokenizer, folder: Path) -> int:
    """The pad token's id: tokenizer_config.json's pad_token, else [PAD] / <pad>, else 0."""
    names = [PAD, "<pad>"]
    config = folder / "tokenizer_config.json"
    if config.is_file():
        pad = json.loads(config.read_text(encoding="utf-8")).get("pad_token")
        names.insert(0, pad.get("content") if isinstance(pad, dict) else pad)
    ids = [tokenizer.token_to_id(n) for n in names if n]
    return next((i for i in ids if i is not None), 0)


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """How many tokens the tokenizer makes of each text, before any cut."""
    return [len(tokenizer.encode(text).ids) for text in texts]


class TextProcessor:
    """Turns a record's text into token ids: ``cfg.tokenizer`` ``ngram`` fits a character n-gram vocabulary on
    the training text (``cfg.ngrams``), ``bpe`` a BPE tokenizer (``vocab_size``, ``min_frequency``,
    ``lowercase``); any other value names a pretrained model's
    tokenizer (a folder or ``package:<name>``, as ``model.text.pretrained_path``), used as it is, adding
    the model's special tokens ([CLS] ... [SEP]) and truncating to ``max_len`` with them kept. ``max_len: auto``
    (BPE and pretrained tokenizers) is chosen at fit from the training texts' token counts (``auto_len``)."""

    modality = "text"

    def __init__(self, cfg: Mapping[str, Any], root: Path, folder: str):
        self.cfg, self.root, self.folder = cfg, Path(root), folder
        self.tokenizer_json: str | None = None
        self._tokenizer: Tokenizer | None = None
        self.pad_id: int | None = None
        self.lengths: dict[str, int] | None = None  # set by fit: the probed training texts' token counts
        self.vocabulary: dict[str, Any] | None = None  # set by fit (n-grams): how the vocabulary was chosen
        self._max_len = fixed_max_len(cfg["max_len"])  # None for auto: set by fit or load
        if self._max_len is None:
            check_auto_rule(cfg["auto_len"], AUTO_RULE)

    def read(self, record: Record) -> str:
        """The record's text (inline or from its file, decoded as UTF-8), cut to ``max_chars`` characters
        and stripped."""
        max_chars = int(self.cfg["max_chars"])
        if record.text is not None:
            text = record.text[:max_chars]
        else:
            text = read_utf8_prefix(resolve_file(self.root, record.text_path, self.folder), max_chars)
        text = text.strip()
        if not text:
            raise RecordError("empty text")
        return text

    @property
    def tokenizer_name(self) -> str:
        return str(self.cfg.get("tokenizer") or BPE)

    @property
    def max_len(self) -> int:
        """Tokens kept per text: n-gram tokens have their own limit (a word gives several); otherwise the configured
        number or what fit chose (load restores it)."""
        if self.tokenizer_name == NGRAM:
            return int(self.cfg["ngrams"]["max_len"])
        if self._max_len is None:
            raise RuntimeError(
                "preprocess.text.max_len is auto: fit the text processor on training texts (or load a fitted one's "
                "meta.json) before encoding text"
            )
        return self._max_len

    @property
    def max_len_key(self) -> str:
        return "preprocess.text.ngrams.max_len" if self.tokenizer_name == NGRAM else "preprocess.text.max_len"

    def fit(self, records: list[Record]) -> None:
        """Train the BPE tokenizer on the training split's readable texts (or load the pretrained one), then
        count the tokens of the first ``length_probe`` of them (:meth:`measure_lengths`)."""
        if self.tokenizer_name not in (BPE, NGRAM):
            tokenizer = load_pretrained_tokenizer(self.tokenizer_name)
            self.measure_lengths(tokenizer, self._readable(records, int(self.cfg["length_probe"]))[0])
            tokenizer.enable_truncation(self.max_len)
            self.pad_id = _pad_id(tokenizer, resolve_pretrained_path(self.tokenizer_name, "preprocess.text.tokenizer"))
            self.tokenizer_json = tokenizer.to_str()
            self._tokenizer = tokenizer
            return
        texts, labels = self._readable(records)
        if self.tokenizer_name == NGRAM:
            self._fit_ngrams(texts, labels)
            return
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if self.cfg["lowercase"] else [])
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        # BPE, not WordPiece: WordPiece's "##" continuation tokens get ids in hash-map order, so its
        # vocabulary differs from run to run (huggingface/tokenizers#1794); BPE's does not.
        trainer = trainers.BpeTrainer(
            vocab_size=int(self.cfg["vocab_size"]),
            min_frequency=int(self.cfg["min_frequency"]),
            special_tokens=[PAD, UNK],
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
        self.pad_id = tokenizer.token_to_id(PAD)
        self.tokenizer_json = tokenizer.to_str()
        self._tokenizer = tokenizer
        self.measure_lengths(tokenizer, texts[: int(self.cfg["length_probe"])])

    def _fit_ngrams(self, texts: list[str], labels: list[Any]) -> None:
        """Fit the n-gram vocabulary as ``ngrams.select`` says: ``chi2`` keeps the n-grams that depend on the label,
        ``frequency`` the most frequent. ``auto`` fits the second, and refits with the first when the cut to
        ``max_len`` would drop more than ``auto_past`` of the probed texts' n-grams: a text cut to its first
        n-grams loses words that matter, while one that (nearly) fits keeps its own, and there the frequency
        vocabulary measured better (docs/results.md, "Long texts")."""
        grams = self.cfg["ngrams"]
        select = str(grams["select"])
        if select not in SELECTIONS:
            raise ValueError(f"preprocess.text.ngrams.select={select!r}: choose one of {', '.join(SELECTIONS)}")
        shape = [int(grams[key]) for key in ("vocab_size", "min_frequency", "min_n", "max_n")]

        def fitted(method: str) -> CharNgramTokenizer:
            by_label = method == CHI2
            return CharNgramTokenizer.train(
                texts,
                *shape,
                bool(self.cfg["lowercase"]),
                labels=labels if by_label else None,
                alpha=float(grams["alpha"]) if by_label else None,
            )

        probe = texts[: int(self.cfg["length_probe"])]
        method = FREQUENCY if select == AUTO else select
        tokenizer = fitted(method)
        lengths = self.count_lengths(tokenizer, probe) if select == AUTO else None
        if lengths is not None and lengths["share_past_max_len"] > float(grams["auto_past"]):
            print(
                f"[preprocess_text] the cut to max_len={self.max_len} would drop {lengths['share_past_max_len']:.0%} "
                f"of the n-grams of the {lengths['probed']} training texts checked (95th percentile "
                f"{lengths['p95']} n-grams): the vocabulary keeps the n-grams that depend on the label "
                "(preprocess.text.ngrams.select=auto).",
                flush=True,
            )
            method = CHI2
            tokenizer = fitted(method)
            lengths = None  # counted with the frequency vocabulary
        self.pad_id, self.tokenizer_json, self._tokenizer = 0, tokenizer.to_str(), tokenizer
        self.measure_lengths(tokenizer, probe, lengths)
        self._report_vocabulary(tokenizer, grams, select, method)

    def _readable(self, records: list[Record], limit: int | None = None) -> tuple[list[str], list[Any]]:
        """The texts of ``records`` (at most ``limit``) that can be read, and their labels; the others are
        rejected with their reason when the record itself is processed."""
        texts: list[str] = []
        labels: list[Any] = []
        for record in records:
            if limit is not None and len(texts) >= limit:
                break
            try:
                texts.append(self.read(record))
            except RecordError:
                continue
            labels.append(record.label)
        return texts, labels

    def count_lengths(self, tokenizer: Any, texts: list[str]) -> dict[str, int] | None:
        """Token counts of ``texts`` before the cut to ``max_len``: how many, how many are longer, the 95th
        percentile, the longest, and the share of all their tokens that the cut drops (None for no text)."""
        return length_summary(token_counts(tokenizer, texts), self.max_len, "max_len")

    def measure_lengths(self, tokenizer: Any, texts: list[str], counted: dict[str, int] | None = None) -> None:
        """:meth:`count_lengths` (or ``counted``, its result for this tokenizer) into meta.json's ``lengths``, and a
        warning naming the knob when some texts are longer than ``max_len``: a long text loses its later tokens,
        which may be the ones that matter. An automatic ``max_len`` is chosen from the token counts first."""
        if counted is None:
            counts = token_counts(tokenizer, texts)
            if self._max_len is None and self.tokenizer_name != NGRAM:
                self._max_len = self.auto_max_len(counts)
            counted = length_summary(counts, self.max_len, "max_len")
        self.lengths = counted
        warn_of_cut("preprocess_text", self.lengths, self.max_len, self.max_len_key, "texts", "tokens")

    def auto_max_len(self, counts: list[int]) -> int:
        """``auto_len``'s choice from the training texts' token counts (:func:`~fusion.preprocess.lengths.auto_limit`:
        by default their median rounded up to 8 tokens, within [8, 512]), at most the positions of a pretrained
        model; said aloud. The median, as for the audio's crop: on long notes a transformer learned as much from
        their first 152 tokens as from 264 (the 95th percentile), at half the CPU (docs/results.md)."""
        rule = self.cfg["auto_len"]
        chosen = math.ceil(auto_limit(counts, rule, AUTO_RULE))  # a whole number of tokens, whatever the step
        positions = None
        if self.tokenizer_name not in (BPE, NGRAM):
            positions = position_limit(resolve_pretrained_path(self.tokenizer_name, "preprocess.text.tokenizer"))
        capped = positions is not None and chosen > positions
        chosen = min(chosen, positions) if capped else chosen
        print(
            f"[preprocess_text] preprocess.text.max_len=auto: {chosen} tokens, the {float(rule['quantile']):g} "
            f"quantile of {len(counts)} training texts' token counts rounded up to {float(rule['step']):g}, within "
            f"[{float(rule['min']):g}, {float(rule['max']):g}] (preprocess.text.auto_len)"
            + (f", at most the pretrained model's {positions} positions" if capped else ""),
            flush=True,
        )
        return chosen

    def _report_vocabulary(
        self, tokenizer: CharNgramTokenizer, grams: Mapping[str, Any], select: str, method: str
    ) -> None:
        """How the n-gram vocabulary was chosen (meta.json's ``vocabulary``), said aloud when it leaves n-grams
        out: n-grams that do not depend on the label, or a full vocabulary."""
        kept, eligible, dependent = tokenizer.get_vocab_size() - 2, tokenizer.eligible, tokenizer.dependent
        found = f"n-grams found in at least {grams['min_frequency']} training texts"
        self.vocabulary = {
            "select": select,
            "method": FREQUENCY if dependent is None else CHI2,
            "eligible": eligible,
            "kept": kept,
        }
        if dependent is not None:
            self.vocabulary.update(alpha=float(grams["alpha"]), dependent=dependent)
            print(
                f"[preprocess_text] n-gram vocabulary: {dependent} of the {eligible} {found} depend on the label "
                f"(chi-squared test, p < {grams['alpha']}); the others are left out of every text "
                f"(preprocess.text.ngrams.select={FREQUENCY} keeps the most frequent instead).",
                flush=True,
            )
            if dependent == 0:
                print(
                    f"[preprocess_text] warning: no n-gram depends on the label at p < {grams['alpha']}, so every "
                    "text reads as [UNK]; raise preprocess.text.ngrams.alpha or set "
                    f"preprocess.text.ngrams.select={FREQUENCY}.",
                    flush=True,
                )
        elif method == CHI2:
            print(
                "[preprocess_text] numeric labels (regression) have no classes to test the n-grams against: the "
                f"vocabulary keeps the most frequent, as preprocess.text.ngrams.select={FREQUENCY} does.",
                flush=True,
            )
        candidates = eligible if dependent is None else dependent
        if candidates is not None and candidates > kept:
            which = "most frequent" if dependent is None else "most label-dependent"
            print(
                f"[preprocess_text] the n-gram vocabulary keeps the {kept} {which} of {candidates} candidate {found}; "
                "raise preprocess.text.ngrams.vocab_size to keep more.",
                flush=True,
            )

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:  # rebuilt lazily in worker processes
            if is_saved_ngram_tokenizer(self.tokenizer_json):
                self._tokenizer = CharNgramTokenizer.from_str(self.tokenizer_json)
            else:
                self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return self._tokenizer

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}

    def process(self, record: Record) -> dict[str, torch.Tensor]:
        return self.encode(self.read(record))

    def encode(self, text: str) -> dict[str, torch.Tensor]:
        """Token ids of an already read text (also used on perturbed text by the robustness stage)."""
        ids = self.tokenizer.encode(text).ids[: self.max_len]
        if not ids:
            raise RecordError("text has no tokens after normalisation")
        return {"tokens": torch.tensor(ids, dtype=torch.int32)}

    def meta(self) -> dict[str, Any]:
        return {
            "tokenizer": self.tokenizer_name,  # checked against model.text.tokenizer when the model is built
            "vocab_size": self.tokenizer.get_vocab_size(),
            "pad_id": self.pad_id,
            "max_len": self.max_len,
            **({"lengths": self.lengths} if self.lengths is not None else {}),
            **({"vocabulary": self.vocabulary} if self.vocabulary is not None else {}),
        }

    def save(self, out_dir: Path) -> None:
        self.tokenizer.save(str(out_dir / "tokenizer.json"))

    def load(self, out_dir: Path) -> None:
        """Restore the fitted tokenizer, pad id and tokens kept per text that :meth:`save` and meta.json left in
        ``out_dir`` (the stored texts were cut at meta.json's ``max_len``, so perturbed or served texts are too)."""
        self.tokenizer_json = (Path(out_dir) / "tokenizer.json").read_text(encoding="utf-8")
        self._tokenizer = None
        path = Path(out_dir) / "meta.json"
        if path.is_file():
            meta = json.loads(path.read_text(encoding="utf-8"))
            self.pad_id = meta.get("pad_id")
            if meta.get("tokenizer") != NGRAM and "max_len" in meta:
                self._max_len = int(meta["max_len"])
