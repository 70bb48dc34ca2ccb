"""Per-modality encoders: tokenizer/embedder -> learned positional embedding -> masked self-attention.

Each encoder maps its modality's batch dict to ``(tokens [B, N, D], mask [B, N])`` where ``mask`` is
token validity AND the sample's ``present`` flag. The transformer trunk is the pre-norm ViT encoder of
Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words".

Token sources: text — our own embedding (:class:`TextEncoder`) or a pretrained Hugging Face encoder
(:class:`PretrainedTextEncoder`); image and audio — any timm model cut at one feature stage
(:class:`TimmEncoder`: :class:`ImageEncoder`, :class:`TimmAudioEncoder`) or, for audio, spectrogram
patches (:class:`AudioEncoder`). Every encoder takes ``freeze`` and ``lora`` (LoRA adapters via ``peft``,
Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models"), acting on its pretrained backbone
(timm model / Hugging Face model) or, for encoders without one, on the whole encoder. LoRA and freezing live in
:mod:`fusion.models.adapt`, checkpoint loading in :mod:`fusion.models.backbone_checkpoint`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import timm
import torch
import torch.nn.functional as F
from timm.layers import PatchEmbed
from torch import Tensor, nn

from fusion.models.adapt import _freeze_unused, apply_lora, import_optional
from fusion.models.attention import Block, block_options, make_dropout
from fusion.models.backbone_checkpoint import load_backbone_checkpoint
from fusion.pretrained import resolve_pretrained_path

__all__ = [
    "TokenEncoder",
    "TextEncoder",
    "PretrainedTextEncoder",
    "TimmEncoder",
    "ImageEncoder",
    "TimmAudioEncoder",
    "AudioEncoder",
    "channel_stats",
]


def channel_stats(values: Sequence[float], channels: int) -> Tensor:
    """A per-channel statistic [1, C, 1, 1]; one value serves every channel."""
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * channels
    elif channels == 1:  # RGB statistics for grey images (preprocess.image.channels): their grey value
        values = [sum(values) / len(values)]
    if len(values) != channels:
        raise ValueError(
            f"model.image mean/std have {len(values)} values for {channels}-channel images: "
            "give one value or one per channel"
        )
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


class TokenEncoder(nn.Module):
    """Shared trunk: add learned positional embeddings, then ``depth`` masked self-attention Blocks and a
    final norm. Subclasses turn their modality into tokens and call :meth:`encode`."""

    runs_empty_batch = True  # whether the token source runs on a zero-size batch (see encode_rows)

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        num_positions: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        fused_attn: bool = True,
        attn_score: str = "scaled_dot",
        attn_gate: bool = False,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.num_positions = num_positions
        self.pos_embed = nn.Parameter(torch.empty(1, num_positions, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.pos_drop = make_dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                num_heads,
                **block_options(
                    mlp_ratio, dropout, attn_dropout, fused_attn, attn_score, attn_gate, norm_layer, act_layer
                ),
            )
            for _ in range(depth)
        )
        self.norm = norm_layer(dim)
        self.frozen = False

    @property
    def adaptable(self) -> nn.Module:
        """What ``freeze`` and ``lora`` act on: the pretrained backbone if the encoder has one, else itself."""
        backbone = getattr(self, "backbone", None)
        return self if backbone is None else backbone

    def adapt(self, freeze: bool = False, lora: Optional[Mapping[str, Any]] = None, config_key: str = "model") -> None:
        """``freeze``: no gradients for :attr:`adaptable`, which also stays in eval mode (BatchNorm statistics,
        dropout). ``lora``: LoRA adapters in it (:func:`apply_lora`), its base weights frozen."""
        if freeze:
            self.adaptable.requires_grad_(False)
            self.frozen = True
            self.train(self.training)
        if lora:
            apply_lora(self.adaptable, lora, config_key)

    def train(self, mode: bool = True) -> "TokenEncoder":
        super().train(mode)
        if self.frozen:
            for module in self.adaptable.modules():
                module.training = False
        return self

    def encode_rows(self, rows: Tensor, embed: Callable[[Tensor], Tensor], mask: Optional[Tensor] = None) -> Tensor:
        """Tokens [B, N, D] where only the samples with ``rows`` [B] True are embedded (``embed(index)`` ->
        [b, N, D]) and encoded; the others are zeros. Absent samples thus never reach a backbone (its
        BatchNorm statistics). With no row kept, ``embed`` still runs on the empty batch where the backbone
        can (BatchNorm leaves its statistics alone on a zero-size batch, SyncBatchNorm ranks still meet in
        their collectives); where it cannot (ViT, Hugging Face models: ``runs_empty_batch`` False) the zeros
        are tied to every trainable parameter instead. Either way each parameter gets a (zero) gradient (DDP)."""
        idx = rows.nonzero().squeeze(1)
        if idx.numel() == 0 and not self.runs_empty_batch:
            anchor = sum((p.reshape(-1)[0] for p in self.parameters() if p.requires_grad), self.pos_embed.new_zeros(()))
            return self.pos_embed.new_zeros(rows.shape[0], self.num_positions, self.dim) + anchor * 0
        encoded = self.encode(embed(idx), None if mask is None else mask.index_select(0, idx))
        return encoded.new_zeros(rows.shape[0], *encoded.shape[1:]).index_copy(0, idx, encoded)

    def encode(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x [B, N, D] embedded tokens, mask [B, N] -> contextualised tokens [B, N, D]."""
        n = x.shape[1]
        if n > self.num_positions:
            raise ValueError(
                f"{type(self).__name__}: got {n} tokens but the positional embedding holds {self.num_positions}; "
                "raise the configured maximum length"
            )
        x = self.pos_drop(x + self.pos_embed[:, :n])
        for blk in self.blocks:
            x = blk(x, mask)
        return self.norm(x)


class TextEncoder(TokenEncoder):
    """Token embedding + transformer encoder over word pieces; inputs ``{"tokens", "mask", "present"}``."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        max_len: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pad_id: int = 0,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        **trunk_kwargs,
    ) -> None:
        super().__init__(dim, depth, num_heads, max_len, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.adapt(freeze, lora, "model.text")

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mask = inputs["mask"] & inputs["present"][:, None]
        return self.encode(self.embed(inputs["tokens"]), mask), mask


class PretrainedTextEncoder(TokenEncoder):
    """A pretrained Hugging Face encoder (``transformers.AutoModel``, loaded from a local folder or a
    ``package:<name>`` spec, never downloaded) over the ids of its own tokenizer, its last hidden states
    projected to D, then the transformer trunk. Inputs ``{"tokens", "mask", "present"}``; only samples with
    tokens go through the model. ``freeze`` freezes the Hugging Face model, ``lora`` adapts it
    (e.g. ``target_modules: [query, value]`` for BERT); the projection and trunk always train."""

    runs_empty_batch = False  # Hugging Face attention cannot reshape a zero-size batch

    def __init__(
        self,
        pretrained_path: str,
        dim: int,
        depth: int,
        num_heads: int,
        max_len: int,
        vocab_size: Optional[int] = None,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        **trunk_kwargs,
    ) -> None:
        transformers = import_optional("transformers", "model.text.kind=pretrained")
        path = resolve_pretrained_path(pretrained_path)
        backbone = transformers.AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
        config = backbone.config
        if vocab_size is not None and vocab_size > config.vocab_size:
            raise ValueError(
                f"the text data has {vocab_size} token ids but {pretrained_path!r} embeds {config.vocab_size}: "
                f"preprocess the text with the model's own tokenizer (preprocess.text.tokenizer={pretrained_path})"
            )
        if max_len > getattr(config, "max_position_embeddings", max_len):
            raise ValueError(
                f"max_len={max_len} (model.text.max_len / preprocess.text.max_len) exceeds the "
                f"{config.max_position_embeddings} positions of {pretrained_path!r}"
            )
        super().__init__(dim, depth, num_heads, max_len, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.pretrained_path = str(pretrained_path)
        self.backbone = backbone
        self.proj = nn.Linear(config.hidden_size, dim)
        backbone.eval()  # deterministic probe
        with torch.enable_grad():
            ids = torch.zeros(1, 2, dtype=torch.long)
            _freeze_unused(backbone, backbone(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state)
        self.train(self.training)  # from_pretrained returns the model in eval mode; follow the encoder's mode
        self.adapt(freeze, lora, "model.text")

    def embed(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Token ids [b, L] and their mask -> projected hidden states [b, L, D]."""
        return self.proj(self.backbone(input_ids=tokens, attention_mask=mask.long()).last_hidden_state)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        tokens, mask = inputs["tokens"], inputs["mask"] & inputs["present"][:, None]
        out = self.encode_rows(
            mask.any(dim=1), lambda idx: self.embed(tokens.index_select(0, idx), mask.index_select(0, idx)), mask
        )
        return out, mask


def _create_features_model(name: str, out_index: int, in_chans: int, input_size: tuple[int, int]) -> nn.Module:
    """``timm.create_model(features_only=True)`` cut at ``out_index``, never pretrained. Models with a fixed
    input size (ViT & co.) are built for ``input_size`` (``img_size``); CNNs take any size."""
    kwargs = dict(pretrained=False, features_only=True, out_indices=(out_index,), in_chans=in_chans)
    try:
        return timm.create_model(name, img_size=input_size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
    return timm.create_model(name, **kwargs)


def _patch_size(backbone: nn.Module) -> Optional[tuple[int, int]]:
    """The patch size of a ViT-style backbone's patch embedding, None for a CNN."""
    patch = next((m.patch_size for m in backbone.modules() if isinstance(m, PatchEmbed)), None)
    return None if patch is None else tuple(patch)


class TimmEncoder(TokenEncoder):
    """Any timm model cut at one feature stage (``features_only``, ``out_indices=(out_index,)``), its h*w
    positions as tokens projected to D, then the transformer trunk. CNNs give their stage's feature map;
    ViT-style models (timm's ``forward_intermediates``) the patch tokens of block ``out_index`` (-1: the
    last), without class/register tokens, and are built for ``input_size``, which their patch size must
    divide (``pad_to_patch``: round the input up instead). Shared by :class:`ImageEncoder` and
    :class:`TimmAudioEncoder`; ``config_key`` names their config section in error messages.

    Backbone parameters the selected stage does not depend on (kept by some timm feature wrappers) are
    frozen. ``pretrained`` weights only come from a local ``checkpoint_path``.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        depth: int,
        num_heads: int,
        out_index: int,
        input_size: tuple[int, int],
        in_chans: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pretrained: bool = False,
        checkpoint_path: Optional[str] = None,
        channels_last: bool = True,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        config_key: str = "model.image",
        pad_to_patch: bool = False,
        **trunk_kwargs,
    ) -> None:
        if pretrained and not checkpoint_path:
            raise ValueError(
                f"{config_key}.pretrained=true but no weights are downloaded at run time: set "
                f"{config_key}.checkpoint_path to a local timm checkpoint (.safetensors or .pth) of "
                f"{name!r}, or set pretrained=false"
            )
        input_size = tuple(int(s) for s in input_size)
        backbone = _create_features_model(name, out_index, in_chans, input_size)
        patch = _patch_size(backbone)
        if patch is not None and any(s % p for s, p in zip(input_size, patch, strict=True)):
            if not pad_to_patch:
                raise ValueError(
                    f"{config_key}.name={name!r} has patch size {patch}, which must divide the input size "
                    f"{input_size} (the image size comes from data_meta, i.e. preprocess.image.size): use a "
                    "multiple of the patch size, or a model with another patch size"
                )
            input_size = tuple(-(-s // p) * p for s, p in zip(input_size, patch, strict=True))
            backbone = _create_features_model(name, out_index, in_chans, input_size)
        if checkpoint_path:
            load_backbone_checkpoint(backbone, checkpoint_path, config_key)
        channels = backbone.feature_info.channels()[-1]
        grid = self._probe_backbone(backbone, in_chans, input_size)
        super().__init__(dim, depth, num_heads, math.prod(grid), mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.input_size, self.grid = input_size, grid
        self.runs_empty_batch = self._runs_empty_batch(backbone, in_chans, input_size)
        # NHWC convolutions are ~25% faster on CPU (oneDNN) and suit tensor cores on GPU.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone = backbone.to(memory_format=self.memory_format)
        self.proj = nn.Linear(channels, dim)
        self.adapt(freeze, lora, config_key)

    @staticmethod
    def _probe_backbone(backbone: nn.Module, in_chans: int, input_size: tuple[int, int]) -> tuple[int, int]:
        """Feature-map grid (h, w) at the configured input size; freezes parameters the selected stage does
        not depend on. Eval mode: BN running stats stay untouched."""
        was_training = backbone.training
        backbone.eval()
        with torch.enable_grad():
            feat = backbone(torch.zeros(1, in_chans, *input_size))[-1]
            _freeze_unused(backbone, feat)
        backbone.train(was_training)
        return tuple(feat.shape[2:])

    @staticmethod
    def _runs_empty_batch(backbone: nn.Module, in_chans: int, input_size: tuple[int, int]) -> bool:
        """CNNs run a zero-size batch; ViT-style models reshape with -1 and cannot."""
        was_training = backbone.training
        try:
            with torch.no_grad():
                backbone.eval()(torch.zeros(0, in_chans, *input_size))
            return True
        except RuntimeError:
            return False
        finally:
            backbone.train(was_training)

    def backbone_tokens(self, x: Tensor) -> Tensor:
        """float [B, C, H, W] -> projected feature tokens [B, h*w, D]."""
        feat = self.backbone(x.contiguous(memory_format=self.memory_format))[-1]
        return self.proj(feat.flatten(2).transpose(1, 2))


class ImageEncoder(TimmEncoder):
    """timm feature tokens of the image (:class:`TimmEncoder`: CNN feature map or ViT patch tokens) + a
    transformer encoder; inputs ``{"image": uint8 [B, 3, H, W], "present"}``, normalised inside.

    Only present images go through the backbone, so absent (zero) images never enter BatchNorm statistics.
    """

    def __init__(
        self,
        name: str,
        dim: int,
        depth: int,
        num_heads: int,
        out_index: int,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int = 64,
        in_chans: int = 3,
        **kwargs,
    ) -> None:
        """``kwargs``: the :class:`TimmEncoder` options (pretrained, checkpoint_path, freeze, lora, ...)."""
        super().__init__(
            name,
            dim,
            depth,
            num_heads,
            out_index,
            (image_size, image_size),
            in_chans,
            config_key="model.image",
            **kwargs,
        )
        self.image_size = image_size
        self.register_buffer("mean", channel_stats(mean, in_chans), persistent=False)
        self.register_buffer("std", channel_stats(std, in_chans), persistent=False)

    def embed(self, image: Tensor) -> Tensor:
        """uint8 [B, 3, H, W] -> projected feature tokens [B, h*w, D]."""
        return self.backbone_tokens((image.float() / 255.0 - self.mean) / self.std)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        image, present = inputs["image"], inputs["present"]
        if tuple(image.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"ImageEncoder was built for {self.image_size}x{self.image_size} images (data_meta.image.size), "
                f"got {tuple(image.shape[-2:])}"
            )
        tokens = self.encode_rows(present, lambda idx: self.embed(image.index_select(0, idx)))
        return tokens, present[:, None].expand(image.shape[0], self.num_positions)


def _pad_frames(mel: Tensor, frame_mask: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """Pad [B, n_mels, T] / [B, T] by ``pad`` frames and zero every invalid frame, so padding cannot leak
    into a token that also covers valid frames; returns the mel and the frames' validity as 0/1 in the mel's
    dtype (padding and reducing a boolean mask in one fused kernel trips a torch.compile (inductor CPU) code
    generation bug in torch 2.11)."""
    valid = F.pad(frame_mask.to(mel.dtype), (0, pad))
    return F.pad(mel, (0, pad)) * valid[:, None, :], valid


class TimmAudioEncoder(TimmEncoder):
    """A timm model (:class:`TimmEncoder`, ``in_chans=1``) over the log-mel spectrogram as a 1-channel image
    [n_mels, frames], padded to ``max_frames`` (rounded up to the patch size for ViT-style models).
    Inputs ``{"mel": [B, n_mels, T], "mask": [B, T], "present"}``. A token is valid if any frame of its
    time span is; padded frames are zeroed; absent samples never go through the backbone (BatchNorm)."""

    def __init__(
        self,
        name: str,
        n_mels: int,
        max_frames: int,
        dim: int,
        depth: int,
        num_heads: int,
        out_index: int,
        **kwargs,
    ) -> None:
        """``kwargs``: the :class:`TimmEncoder` options (pretrained, checkpoint_path, freeze, lora, ...)."""
        super().__init__(
            name,
            dim,
            depth,
            num_heads,
            out_index,
            (n_mels, max_frames),
            1,
            config_key="model.audio",
            pad_to_patch=True,
            **kwargs,
        )
        self.n_mels, self.max_frames = n_mels, max_frames

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mel, present = inputs["mel"], inputs["present"]
        if mel.shape[1] != self.n_mels or mel.shape[2] > self.max_frames:
            raise ValueError(
                f"TimmAudioEncoder was built for {self.n_mels} mel bins and at most {self.max_frames} "
                f"frames (data_meta.audio), got {tuple(mel.shape[1:])}"
            )
        height, width = self.input_size
        mel, valid_frames = _pad_frames(mel, inputs["mask"] & present[:, None], width - mel.shape[2])
        mel = F.pad(mel, (0, 0, 0, height - self.n_mels))  # mel bins rounded up to the patch size: zeros
        h, w = self.grid
        # Time span of each feature column: adaptive pooling windows over the frames.
        valid = F.adaptive_max_pool1d(valid_frames[:, None], w)[:, 0] > 0
        mask = valid[:, None, :].expand(-1, h, w).flatten(1)
        tokens = self.encode_rows(
            mask.any(dim=1), lambda idx: self.backbone_tokens(mel.index_select(0, idx)[:, None]), mask
        )
        return tokens, mask


class AudioEncoder(TokenEncoder):
    """Spectrogram patch embedding (non-overlapping ``patch_frames``-frame patches across all mel bins,
    as a strided Conv1d; cf. Gong et al., 2021, "AST: Audio Spectrogram Transformer") + transformer encoder.
    Inputs ``{"mel": [B, n_mels, T], "mask": [B, T], "present"}``; a patch is valid if any frame is."""

    def __init__(
        self,
        n_mels: int,
        dim: int,
        depth: int,
        num_heads: int,
        patch_frames: int,
        max_frames: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        **trunk_kwargs,
    ) -> None:
        num_patches = -(-max_frames // patch_frames)
        super().__init__(dim, depth, num_heads, num_patches, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.patch_frames = patch_frames
        self.patch_embed = nn.Conv1d(n_mels, dim, kernel_size=patch_frames, stride=patch_frames)
        self.adapt(freeze, lora, "model.audio")

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mel, valid = _pad_frames(
            inputs["mel"], inputs["mask"] & inputs["present"][:, None], -inputs["mel"].shape[-1] % self.patch_frames
        )
        x = self.patch_embed(mel).transpose(1, 2)
        mask = valid.unflatten(1, (-1, self.patch_frames)).amax(dim=-1) > 0
        return self.encode(x, mask), mask
