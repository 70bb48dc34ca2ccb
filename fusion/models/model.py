"""Encoders -> fusion -> MLP head: the multimodal classifier, with optional per-modality heads."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from fusion.models.attention import Mlp, make_dropout

__all__ = [
    "HEAD_VOTES",
    "MultimodalClassifier",
    "ModalityHead",
    "Predictions",
    "head_vote",
    "hybrid_of_experts",
    "mixture_of_experts",
    "product_of_experts",
]


def product_of_experts(logits: Tensor, head_logits: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
    """The fused head's log-probabilities plus those of each modality head whose modality the sample holds: the
    classes every present expert allows score highest (an absent modality's head, which saw nothing, abstains)."""
    total = logits.log_softmax(dim=-1)
    for m, head in head_logits.items():
        present = masks[m].any(dim=1, keepdim=True).to(total.dtype)
        total = total + present * head.log_softmax(dim=-1)
    return total


def _present_heads(head_logits: dict[str, Tensor], masks: dict[str, Tensor]) -> tuple[list[Tensor], Tensor]:
    """Each modality head's log-probabilities, -inf where the sample lacks the modality (the head saw nothing and
    abstains), and how many heads each sample holds [B, 1]."""
    experts, count = [], None
    for m, head in head_logits.items():
        present = masks[m].any(dim=1, keepdim=True)
        experts.append(head.log_softmax(dim=-1).masked_fill(~present, -math.inf))
        count = present.long() if count is None else count + present.long()
    return experts, count


def mixture_of_experts(logits: Tensor, head_logits: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
    """The log of the mean class probability of the fused head and each modality head whose modality the sample
    holds: every present expert weighs the same and none can veto a class, where in the product one overconfident
    head decides. Computed in log space (logsumexp), so a class no expert allows stays finite."""
    fused = logits.log_softmax(dim=-1)
    heads, count = _present_heads(head_logits, masks)
    if not heads:
        return fused
    return torch.logsumexp(torch.stack([fused, *heads]), dim=0) - (count + 1).to(fused.dtype).log()


def hybrid_of_experts(logits: Tensor, head_logits: dict[str, Tensor], masks: dict[str, Tensor]) -> Tensor:
    """The log of an even blend of two predictions: the fused head's class probabilities and the late fusion of the
    modality heads (the mean probability of those whose modality the sample holds). The fused model keeps half
    the say however many heads there are, so weak heads (modalities that only narrow the label) cannot outvote it;
    a sample with no modality head present gets the fused head's log-probabilities."""
    fused = logits.log_softmax(dim=-1)
    heads, count = _present_heads(head_logits, masks)
    if not heads:
        return fused
    late = torch.logsumexp(torch.stack(heads), dim=0) - count.clamp_min(1).to(fused.dtype).log()
    blend = torch.logaddexp(fused, late) - math.log(2.0)
    return torch.where(count > 0, blend, fused)


HEAD_VOTES = {"hybrid": hybrid_of_experts, "mean": mixture_of_experts, "product": product_of_experts}


def head_vote(value: bool | str | None) -> Optional[str]:
    """``model.predict_with_heads`` as a rule of :data:`HEAD_VOTES`, or None (off: false or null). ``true`` is the
    product, the only rule before the mean existed, so older configs and model bundles keep their predictions."""
    if value is None or value is False:
        return None
    if value is True:
        return "product"
    if value not in HEAD_VOTES:
        *others, last = HEAD_VOTES
        raise ValueError(f"model.predict_with_heads must be false, {', '.join(others)} or {last}, got {value!r}")
    return str(value)


class Predictions(NamedTuple):
    """One forward pass's outputs side by side: the fused head's logits, each modality head's (empty without
    heads), and the heads' vote (``predict_with_heads``; None when off), so an evaluation can score both."""

    fused: Tensor
    heads: dict[str, Tensor]
    voted: Optional[Tensor]


class ModalityHead(nn.Module):
    """A linear classifier on one modality's tokens alone (masked mean -> LayerNorm -> Linear): the auxiliary
    unimodal head that keeps a weak modality's encoder learning next to a dominant one (cf. Wang et al., 2020,
    "What Makes Training Multi-modal Classification Networks Hard?"), and a per-modality score for
    gradient modulation. An absent modality averages nothing: its features are zero."""

    def __init__(self, dim: int, num_outputs: int, norm_layer: type[nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.norm = norm_layer(dim)
        self.fc = nn.Linear(dim, num_outputs)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """tokens [B, N, D], mask [B, N] -> logits [B, num_outputs]."""
        weights = mask.to(tokens.dtype)[..., None]
        pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return self.fc(self.norm(pooled))


class MultimodalClassifier(nn.Module):
    """Encode each modality to tokens, fuse them to one vector, classify it with an MLP head.

    ``encoders`` keys are the modalities the model uses; ``inputs`` must hold at least those keys.
    """

    def __init__(
        self,
        encoders: nn.ModuleDict,
        fusion: nn.Module,
        num_classes: int,
        head_hidden: int,
        dropout: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        modality_heads: Optional[int] = None,
        predict_with_heads: bool | str | None = None,
    ) -> None:
        """``modality_heads``: the token width D to put a :class:`ModalityHead` on each modality (None: none).
        ``predict_with_heads`` (:func:`head_vote`): in eval mode the output is the fused head's and the modality
        heads' class log-scores combined by that rule (:data:`HEAD_VOTES`); training always sees the fused head's
        logits. Without modality heads there is nothing to combine, and the fused head's logits are the output."""
        super().__init__()
        rule = head_vote(predict_with_heads)  # checked with or without heads, so a misspelt rule never passes
        self.predict_with_heads = rule if modality_heads is not None else None
        self.modalities = list(encoders.keys())
        self.encoders = encoders
        self.fusion = fusion
        self.modality_heads = (
            None
            if modality_heads is None
            else nn.ModuleDict({m: ModalityHead(modality_heads, num_classes, norm_layer) for m in self.modalities})
        )
        if getattr(fusion, "outputs_logits", False):
            # The fusion already combines per-modality predictions (e.g. late_avg): no shared head.
            if fusion.out_dim != num_classes:
                raise ValueError(f"{type(fusion).__name__} outputs {fusion.out_dim} logits, expected {num_classes}")
            self.norm, self.head_drop, self.head = nn.Identity(), nn.Identity(), nn.Identity()
        else:
            self.norm = norm_layer(fusion.out_dim)
            self.head_drop = make_dropout(dropout)
            self.head = Mlp(fusion.out_dim, head_hidden, num_classes, act_layer=act_layer)

    def encode(self, inputs: dict[str, dict[str, Tensor]]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Run every encoder -> (tokens {m: [B, N_m, D]}, masks {m: [B, N_m]})."""
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise KeyError(f"batch lacks modalities {missing} the model was built with (has {sorted(inputs)})")
        tokens, masks = {}, {}
        for m, encoder in self.encoders.items():
            tokens[m], masks[m] = encoder(inputs[m])
        return tokens, masks

    def features(self, inputs: dict[str, dict[str, Tensor]]) -> Tensor:
        """Fused representation [B, fusion.out_dim] before the head (the logits for a logit-level fusion)."""
        return self.fusion(*self.encode(inputs))

    def classify(self, features: Tensor) -> Tensor:
        """Fused representation [B, fusion.out_dim] -> the fused head's logits [B, num_classes]."""
        return self.head(self.head_drop(self.norm(features)))

    def forward(
        self, inputs: dict[str, dict[str, Tensor]], with_modality_logits: bool = False, every_output: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]] | Predictions:
        """Batch dict -> logits [B, num_classes] (with ``predict_with_heads``, in eval mode, the experts' combined
        log-scores); with ``with_modality_logits`` also each modality head's logits {m: [B, num_classes]} (empty
        without heads); with ``every_output`` the :meth:`predictions` of the pass instead (evaluation logs them
        all; through ``forward`` because ``nn.Module.compile`` compiles that method, not the others)."""
        combine = self.predict_with_heads is not None and not self.training
        if every_output:
            return self.predictions(inputs, vote=combine)
        if not (with_modality_logits or combine):
            return self.classify(self.features(inputs))
        fused, heads, voted = self.predictions(inputs, vote=combine)
        logits = voted if combine else fused
        return (logits, heads) if with_modality_logits else logits

    def predictions(self, inputs: dict[str, dict[str, Tensor]], vote: bool = True) -> Predictions:
        """The fused head's, the modality heads' and (with ``vote`` and a rule set) the voted logits of one pass."""
        tokens, masks = self.encode(inputs)
        fused = self.classify(self.fusion(tokens, masks))
        heads = {m: head(tokens[m], masks[m]) for m, head in (self.modality_heads or {}).items()}
        rule = self.predict_with_heads if vote else None
        return Predictions(fused, heads, None if rule is None else HEAD_VOTES[rule](fused, heads, masks))

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count (only those with ``requires_grad`` if ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
