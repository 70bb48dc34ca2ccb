"""Per-modality encoders: tokenizer/embedder -> learned positional embedding -> masked self-attention.

Each encoder maps its modality's batch dict to ``(tokens [B, N, D], mask [B, N])`` where ``mask`` is
token validity AND the sample's ``present`` flag. The transformer trunk is the pre-norm ViT encoder of
Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion.models.attention import Block, make_dropout

__all__ = ["TokenEncoder", "TextEncoder", "ImageEncoder", "AudioEncoder", "load_backbone_checkpoint"]


class TokenEncoder(nn.Module):
    """Shared trunk: add learned positional embeddings, then ``depth`` masked self-attention Blocks and a
    final norm. Subclasses turn their modality into tokens and call :meth:`encode`."""

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
                mlp_ratio=mlp_ratio,
                drop=dropout,
                attn_drop=attn_dropout,
                fused=fused_attn,
                score=attn_score,
                gate=attn_gate,
                act_layer=act_layer,
                norm_layer=norm_layer,
            )
            for _ in range(depth)
        )
        self.norm = norm_layer(dim)

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
        **trunk_kwargs,
    ) -> None:
        super().__init__(dim, depth, num_heads, max_len, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mask = inputs["mask"] & inputs["present"][:, None]
        return self.encode(self.embed(inputs["tokens"]), mask), mask


def load_backbone_checkpoint(backbone: nn.Module, path: str | Path) -> None:
    """Load a local checkpoint (safetensors, or torch pickle read with ``weights_only=True``) into a
    timm ``features_only`` backbone. Accepts the backbone's own state dict, a full classifier checkpoint
    of the same architecture (extra head/stage keys are ignored) or either under a common key prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"image backbone checkpoint not found: {str(path)!r} (set by config key model.image.checkpoint_path)"
        )
    state = timm.models.load_state_dict(str(path), weights_only=True)
    # BatchNorm step counters are bookkeeping that some exported checkpoints omit.
    required = [k for k in backbone.state_dict() if not k.endswith("num_batches_tracked")]
    # Prefix under which the backbone's keys live in the file ('' for plain timm checkpoints).
    prefixes = sorted((k[: -len(required[0])] for k in state if k.endswith(required[0])), key=len)
    prefix = next((p for p in prefixes if all(p + k in state for k in required)), None)
    if prefix is None:
        missing = [k for k in required if k not in state][:5]
        raise RuntimeError(
            f"checkpoint {str(path)!r} does not match the image backbone (model.image.name); "
            f"missing keys e.g. {missing}"
        )
    own = backbone.state_dict()
    backbone.load_state_dict({k: state[prefix + k] for k in own if prefix + k in state}, strict=False)


class ImageEncoder(TokenEncoder):
    """timm CNN feature map (one ``features_only`` stage) flattened to h*w tokens, projected to D, then a
    transformer encoder; inputs ``{"image": uint8 [B, 3, H, W], "present"}``, normalised inside.

    Only present images go through the backbone, so absent (zero) images never enter BatchNorm statistics.
    Backbone parameters after the ``out_index`` stage (kept by some timm feature wrappers) are frozen.
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
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pretrained: bool = False,
        checkpoint_path: Optional[str] = None,
        in_chans: int = 3,
        channels_last: bool = True,
        **trunk_kwargs,
    ) -> None:
        if pretrained and not checkpoint_path:
            raise ValueError(
                "model.image.pretrained=true but no weights are downloaded at run time: set "
                "model.image.checkpoint_path to a local timm checkpoint (.safetensors or .pth) of "
                f"{name!r}, or set pretrained=false"
            )
        backbone = timm.create_model(
            name, pretrained=False, features_only=True, out_indices=(out_index,), in_chans=in_chans
        )
        if checkpoint_path:
            load_backbone_checkpoint(backbone, checkpoint_path)
        channels = backbone.feature_info.channels()[-1]
        num_tokens = self._probe_backbone(backbone, in_chans, image_size)
        super().__init__(dim, depth, num_heads, num_tokens, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.image_size = image_size
        # NHWC convolutions are ~25% faster on CPU (oneDNN) and suit tensor cores on GPU.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone = backbone.to(memory_format=self.memory_format)
        self.proj = nn.Linear(channels, dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    @staticmethod
    def _probe_backbone(backbone: nn.Module, in_chans: int, image_size: int) -> int:
        """Number of feature-map positions at the configured image size. Also freezes parameters the
        selected stage does not depend on (some timm feature wrappers keep later stages), so they count
        as non-trainable and DDP sees no unused parameters. Eval mode: BN running stats stay untouched."""
        was_training = backbone.training
        backbone.eval()
        with torch.enable_grad():
            feat = backbone(torch.zeros(1, in_chans, image_size, image_size))[-1]
            params = [p for p in backbone.parameters() if p.requires_grad]
            grads = torch.autograd.grad(feat.sum(), params, allow_unused=True)
        for p, g in zip(params, grads):
            p.requires_grad_(g is not None)
        backbone.train(was_training)
        return math.prod(feat.shape[2:])

    def embed(self, image: Tensor) -> Tensor:
        """uint8 [B, 3, H, W] -> projected feature tokens [B, h*w, D]."""
        x = ((image.float() / 255.0 - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        feat = self.backbone(x)[-1]
        return self.proj(feat.flatten(2).transpose(1, 2))

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        image, present = inputs["image"], inputs["present"]
        B = image.shape[0]
        if tuple(image.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"ImageEncoder was built for {self.image_size}x{self.image_size} images (data_meta.image.size), "
                f"got {tuple(image.shape[-2:])}"
            )
        mask = present[:, None].expand(B, self.num_positions)
        idx = present.nonzero().squeeze(1)
        # Runs even when idx is empty: BatchNorm leaves its statistics alone on a zero-size batch, every
        # parameter stays in the graph (DDP) and SyncBatchNorm ranks still meet in their collectives.
        encoded = self.encode(self.embed(image.index_select(0, idx)))
        tokens = encoded.new_zeros(B, *encoded.shape[1:]).index_copy(0, idx, encoded)
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
        **trunk_kwargs,
    ) -> None:
        num_patches = -(-max_frames // patch_frames)
        super().__init__(dim, depth, num_heads, num_patches, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.patch_frames = patch_frames
        self.patch_embed = nn.Conv1d(n_mels, dim, kernel_size=patch_frames, stride=patch_frames)

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mel, frame_mask = inputs["mel"], inputs["mask"] & inputs["present"][:, None]
        pad = -mel.shape[-1] % self.patch_frames
        frame_mask = F.pad(frame_mask, (0, pad), value=False)
        # Zero padded frames so they cannot leak into a partially valid patch.
        mel = F.pad(mel, (0, pad)).masked_fill(~frame_mask[:, None, :], 0.0)
        x = self.patch_embed(mel).transpose(1, 2)
        mask = frame_mask.unflatten(1, (-1, self.patch_frames)).any(dim=-1)
        return self.encode(x, mask), mask
