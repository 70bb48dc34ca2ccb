"""Text: read inline or file text, train a subword tokenizer on the training split, encode ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from fusion.data.manifest import Record, RecordError, resolve_file

PAD, UNK = "[PAD]", "[UNK]"


class TextProcessor:
    """Turns a record's text into token ids with a BPE tokenizer fitted on training text."""

    modality = "text"

    def __init__(self, cfg: Mapping[str, Any], root: Path, folder: str):
        self.cfg, self.root, self.folder = cfg, Path(root), folder
        self.tokenizer_json: str | None = None
        self._tokenizer: Tokenizer | None = None

    def read(self, record: Record) -> str:
        """The record's text (inline or from its file), decoded as UTF-8 and stripped."""
        if record.text is not None:
            text = record.text
        else:
            path = resolve_file(self.root, record.text_path, self.folder)
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecordError(f"text is not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8") from None
        text = text.strip()
        if not text:
            raise RecordError("empty text")
        return text

    def fit(self, records: list[Record]) -> None:
        """Train the tokenizer on the training split's readable texts."""
        texts = []
        for record in records:
            try:
                texts.append(self.read(record))
            except RecordError:
                continue  # rejected with its reason when the record itself is processed
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
        self.tokenizer_json = tokenizer.to_str()
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:  # rebuilt lazily in worker processes
            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
        return self._tokenizer

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokenizer": None}

    def process(self, record: Record) -> dict[str, torch.Tensor]:
        ids = self.tokenizer.encode(self.read(record)).ids[: int(self.cfg["max_len"])]
        if not ids:
            raise RecordError("text has no tokens after normalisation")
        return {"tokens": torch.tensor(ids, dtype=torch.int32)}

    def meta(self) -> dict[str, Any]:
        return {
            "vocab_size": self.tokenizer.get_vocab_size(),
            "pad_id": self.tokenizer.token_to_id(PAD),
            "max_len": int(self.cfg["max_len"]),
        }

    def save(self, out_dir: Path) -> None:
        self.tokenizer.save(str(out_dir / "tokenizer.json"))
