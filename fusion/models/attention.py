"""Attention layers with key padding masks, in the style of timm's ViT layers.

Multi-head attention follows Vaswani et al., 2017, "Attention Is All You Need"; blocks are pre-norm
(Xiong et al., 2020, "On Layer Normalization in the Transformer Architecture"). Every layer accepts a
boolean key mask (True = valid) and maps a query with no valid key to an exact zero, never NaN.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SCORES", "block_options", "Attention", "Mlp", "Block", "CrossBlock", "AttentionPool", "make_dropout"]


def make_dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity()`` when p == 0 so a switched-off dropout costs nothing."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _safe_key_mask(key_mask: Optional[Tensor]) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """Turn a key mask [B, Nk] into an SDPA mask [B, 1, 1, Nk] that never masks a whole row, plus a
    [B, 1, 1] keep-factor that zeroes the samples that had no valid key (softmax over nothing = NaN)."""
    if key_mask is None:
        return None, None
    has_key = key_mask.any(dim=-1)
    attn_mask = (key_mask | ~has_key[:, None])[:, None, None, :]
    return attn_mask, has_key[:, None, None]


SCORES = ("scaled_dot", "additive", "cosine")


def block_options(
    mlp_ratio: float = 2.0,
    dropout: float = 0.0,
    attn_dropout: float = 0.0,
    fused_attn: bool = True,
    attn_score: str = "scaled_dot",
    attn_gate: bool = False,
    norm_layer: type[nn.Module] = nn.LayerNorm,
    act_layer: type[nn.Module] = nn.GELU,
) -> dict:
    """The model-level layer knobs (config names, shared by encoders and fusions) as keyword arguments of
    :class:`Block`, :class:`CrossBlock` and :class:`AttentionPool`."""
    return dict(
        mlp_ratio=mlp_ratio,
        drop=dropout,
        attn_drop=attn_dropout,
        fused=fused_attn,
        score=attn_score,
        gate=attn_gate,
        norm_layer=norm_layer,
        act_layer=act_layer,
    )


class Attention(nn.Module):
    """Multi-head attention for self- or cross-attention with a choice of score function.

    ``score``: ``scaled_dot`` q.k/sqrt(d) (Vaswani et al., 2017; through SDPA when ``fused``), ``additive``
    v.tanh(q + k) per head (Bahdanau et al., 2015; always the plain path) or ``cosine`` cos(q, k) times a
    learned per-head temperature (Liu et al., 2022, Swin Transformer V2; SDPA-capable). ``gate`` multiplies
    the attention output by sigmoid(W x) per channel before the output projection (Qiu et al., 2025,
    "Gated Attention for Large Language Models"). Queries come from ``x``, keys/values from ``context``
    (default ``x``); ``key_mask`` [B, Nk] marks valid keys. Queries whose keys are all masked output exact
    zeros and get all-zero weights.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused: bool = True,
        score: str = "scaled_dot",
        gate: bool = False,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if score not in SCORES:
            raise ValueError(f"unknown attention score {score!r} (model.attention.score); available: {SCORES}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.score = score
        self.fused = fused and score != "additive"
        self.attn_drop_p = attn_drop
        # Separate q / kv projections so the same layer serves self- and cross-attention.
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        if score == "additive":
            self.additive_v = nn.Parameter(torch.empty(num_heads, self.head_dim))
            nn.init.trunc_normal_(self.additive_v, std=self.head_dim**-0.5)
        if score == "cosine":
            # Per-head log temperature, initialised to log(10) and capped (Swin V2).
            self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
            self.max_log_scale = math.log(max_logit_scale)
        self.gate = nn.Linear(dim, dim) if gate else None
        self.attn_drop = make_dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = make_dropout(proj_drop)

    def _scaled_qk(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """q, k [B, H, N, d] -> (q', k') whose plain dot product is the score (additive: unchanged)."""
        if self.score == "scaled_dot":
            return q * self.scale, k
        if self.score == "cosine":
            scale = self.logit_scale.clamp(max=self.max_log_scale).exp()
            return F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)
        return q, k

    def scores(self, q: Tensor, k: Tensor) -> Tensor:
        """Unnormalised attention logits [B, H, Nq, Nk] for projected q [B, H, Nq, d] and k [B, H, Nk, d]."""
        q, k = self._scaled_qk(q, k)
        if self.score == "additive":
            return (torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3)) * self.additive_v[:, None, None, :]).sum(-1)
        return q @ k.transpose(-2, -1)

    def forward(
        self,
        x: Tensor,
        context: Optional[Tensor] = None,
        key_mask: Optional[Tensor] = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x [B, Nq, D], context [B, Nk, D], key_mask [B, Nk] -> [B, Nq, D] (and weights [B, H, Nq, Nk])."""
        context = x if context is None else context
        B, Nq, C = x.shape
        Nk = context.shape[1]
        q = self.q(x).reshape(B, Nq, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(context).reshape(B, Nk, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        attn_mask, keep = _safe_key_mask(key_mask)

        weights = None
        # A zero-size batch (a modality absent from every row) takes the plain path: CUDA's SDPA kernels return
        # no tensor at all for it (seen on an H100 with torch 2.11), where the plain path gives an empty one.
        if self.fused and not return_weights and q.numel() > 0 and k.numel() > 0:
            qs, ks = self._scaled_qk(q, k)
            out = F.scaled_dot_product_attention(
                qs, ks, v, attn_mask=attn_mask, dropout_p=self.attn_drop_p if self.training else 0.0, scale=1.0
            )
        else:
            attn = self.scores(q, k)
            if attn_mask is not None:
                attn = attn.masked_fill(~attn_mask, float("-inf"))
            attn = attn.softmax(dim=-1)
            if keep is not None:
                attn = attn * keep[..., None]
            weights = attn
            out = self.attn_drop(attn) @ v

        out = out.transpose(1, 2).reshape(B, Nq, C)
        if self.gate is not None:
            out = out * torch.sigmoid(self.gate(x))
        out = self.proj_drop(self.proj(out))
        if keep is not None:
            out = out * keep  # rows without any valid key: exact zero (also removes the proj bias)
        if return_weights:
            return out, weights
        return out


class Mlp(nn.Module):
    """Transformer feed-forward network: Linear -> activation -> Linear (timm's Mlp). ``drop`` acts on the
    output (residual dropout, Vaswani et al., 2017); ``hidden_drop`` on the activations, off by default."""

    def __init__(
        self,
        in_features: int,
        hidden_features: Optional[int] = None,
        out_features: Optional[int] = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
        hidden_drop: float = 0.0,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = make_dropout(hidden_drop)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = make_dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block (Vaswani et al., 2017; pre-LN as in Xiong et al., 2020): masked
    self-attention then MLP, each with a residual connection; ``drop`` is the residual-branch dropout."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        fused: bool = True,
        score: str = "scaled_dot",
        gate: bool = False,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        mlp_layer: type[nn.Module] = Mlp,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop, fused=fused, score=score, gate=gate
        )
        self.norm2 = norm_layer(dim)
        self.mlp = mlp_layer(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x [B, N, D], mask [B, N] (True = valid key) -> [B, N, D]."""
        x = x + self.attn(self.norm1(x), key_mask=mask)
        return x + self.mlp(self.norm2(x))


class CrossBlock(Block):
    """Pre-norm cross-attention block, the crossmodal transformer layer of MulT (Tsai et al., 2019,
    "Multimodal Transformer for Unaligned Multimodal Language Sequences"): target queries attend to
    a layer-normed source sequence, then MLP; both with residuals on the target stream."""

    def __init__(self, dim: int, num_heads: int, norm_layer: type[nn.Module] = nn.LayerNorm, **kwargs) -> None:
        super().__init__(dim, num_heads, norm_layer=norm_layer, **kwargs)
        self.norm_context = norm_layer(dim)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        context_mask: Optional[Tensor] = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x [B, Nq, D] (target), context [B, Nk, D] (source), context_mask [B, Nk] -> [B, Nq, D]
        (and the attention weights [B, H, Nq, Nk] when ``return_weights``)."""
        out = self.attn(self.norm1(x), self.norm_context(context), key_mask=context_mask, return_weights=return_weights)
        y, weights = out if return_weights else (out, None)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return (x, weights) if return_weights else x


class AttentionPool(nn.Module):
    """Attention pooling with a learned latent query (Set Transformer's PMA, Lee et al., 2019;
    modelled on timm's AttentionPoolLatent): [B, N, D] tokens -> [B, D], zero if no valid token."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        fused: bool = True,
        score: str = "scaled_dot",
        gate: bool = False,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        mlp_layer: type[nn.Module] = Mlp,
    ) -> None:
        super().__init__()
        self.latent = nn.Parameter(torch.empty(1, 1, dim))
        nn.init.trunc_normal_(self.latent, std=dim**-0.5)
        self.norm1 = norm_layer(dim)
        self.attn = Attention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop, fused=fused, score=score, gate=gate
        )
        self.norm2 = norm_layer(dim)
        self.mlp = mlp_layer(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x [B, N, D], mask [B, N] (True = valid) -> [B, D]."""
        B = x.shape[0]
        pooled = self.attn(self.latent.expand(B, -1, -1), self.norm1(x), key_mask=mask)
        pooled = (pooled + self.mlp(self.norm2(pooled)))[:, 0]
        if mask is not None:
            pooled = pooled * mask.any(dim=-1, keepdim=True)  # no valid token -> zero vector
        return pooled
