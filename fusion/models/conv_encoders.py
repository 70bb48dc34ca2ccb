"""Small convolutional token sources for small data: the default encoders of every modality.

A randomly initialised timm backbone or a patch transformer learns little from a thousand records; a few
convolutions with batch normalisation do (LeCun et al., 1998, "Gradient-based learning applied to document
recognition"), and they learn fastest when they halve the resolution with a max-pool rather than a strided
convolution (``downsample``; docs/results.md). Each encoder here turns its modality into a short sequence of
tokens with a conv stack, then hands them to the shared :class:`~fusion.models.encoders.TokenEncoder` trunk
(positional embedding, masked self-attention blocks), so every fusion sees the same
``(tokens [B, N, D], mask [B, N])`` as before:

- :class:`ConvImageEncoder`: per-image standardised pixels -> conv stages that halve the resolution -> an
  at most ``grid`` x ``grid`` max-pooled feature map, one token per cell;
- :class:`ConvAudioEncoder`: the log-mel (optionally standardised per clip) as a 1-channel image -> conv stages
  that halve time and frequency -> one token per time step (frequency and channels flattened), so tokens follow
  time (cf. the CNN front ends of Gulati et al., 2020, "Conformer", and Kong et al., 2020, "PANNs");
- :class:`ConvTextEncoder`: token embeddings -> residual 1-D convolutions (n-grams of subwords, robust to
  typos that split a word into other pieces; cf. Kim, 2014, "Convolutional Neural Networks for Sentence
  Classification").
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion.models.encoders import TokenEncoder, _pad_frames, channel_stats

__all__ = [
    "ConvStage",
    "ConvStack",
    "ConvImageEncoder",
    "ConvAudioEncoder",
    "ConvTextEncoder",
    "HalvingMaxPool",
    "conv_output_size",
    "canonical_polarity",
    "standardise_clips",
]

STANDARDISE_EPS = 1e-5  # floor of a per-image or per-clip standard deviation (a flat input stays finite)
IMAGE_STANDARDISE = ("image", "dataset")
AUDIO_STANDARDISE = ("clip", "dataset")


def canonical_polarity(x: Tensor, border_share: float) -> Tensor:
    """Images in [0, 1] ``[b, C, H, W]``, each inverted (``1 - x``) where at least ``border_share`` of its border
    pixels are brighter than the image's mean (grey level: the mean over channels): a light, even background
    (paper) becomes dark, so a scan and its negative give the same input. A border of mixed tones (a photo) is
    left as it is. With ``border_share > 0.5`` at most one of an image and its negative is inverted."""
    grey = x.mean(dim=1)
    border = torch.cat([grey[:, 0], grey[:, -1], grey[:, 1:-1, 0], grey[:, 1:-1, -1]], dim=1)
    bright = (border > grey.mean(dim=(1, 2))[:, None]).float().mean(dim=1)
    return torch.where((bright >= border_share)[:, None, None, None], 1.0 - x, x)


def conv_output_size(size: int, stages: int) -> int:
    """Length of one axis after ``stages`` stride-2, kernel-3, padding-1 convolutions: ceil(size / 2**stages)."""
    for _ in range(stages):
        size = (size + 1) // 2
    return size


DOWNSAMPLE = ("stride", "maxpool")
GRID_POOLS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
# Non-decreasing activations: they commute with a max, so they may run after the max-pool that follows them.
MONOTONIC_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)


class HalvingMaxPool(nn.MaxPool2d):
    """A 2x2, stride-2 max-pool (ceil mode), as ``nn.MaxPool2d(2, ceil_mode=True)``. On an input that needs no
    gradient (the raw log-mel or image a first stage pools; every pool under ``torch.no_grad``) with even sides it
    takes the elementwise maximum of the four interleaved quarters: the same values, bit for bit, 2.5 to 20 times
    faster on a CPU than max_pool2d's kernel (which vectorises over channels, so a 1-channel log-mel runs scalar and
    took 3% of a training step). Anything else, gradients included, goes through max_pool2d."""

    def __init__(self) -> None:
        super().__init__(2, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad or x.dim() != 4 or x.shape[-2] % 2 or x.shape[-1] % 2:
            return super().forward(x)
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class ConvStage(nn.Sequential):
    """conv3x3 -> BatchNorm -> activation, then ``extra`` stride-1 conv3x3 -> BN -> activation. With ``stride`` 2 the
    stage halves the resolution: ``downsample="stride"`` by a stride-2 first convolution, ``"maxpool"`` by a 2x2
    max-pool before it (LeNet's way: the strongest response of each window survives, which keeps thin strokes and
    short events that a strided convolution can step over)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        stride: int,
        extra: int = 0,
        act_layer: type[nn.Module] = nn.ReLU,
        downsample: str = "stride",
    ) -> None:
        if downsample not in DOWNSAMPLE:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE}, got {downsample!r}")
        if stride not in (1, 2):
            raise ValueError(f"a conv stage's stride must be 1 or 2, got {stride}")
        pooled = downsample == "maxpool" and stride > 1
        layers: list[nn.Module] = [HalvingMaxPool()] if pooled else []
        for i in range(1 + extra):
            layers += [
                nn.Conv2d(
                    in_chans if i == 0 else out_chans,
                    out_chans,
                    3,
                    stride=stride if i == 0 and not pooled else 1,
                    padding=1,
                    bias=False,
                ),
                nn.BatchNorm2d(out_chans),
                act_layer(),
            ]
        super().__init__(*layers)


class ConvStack(nn.Sequential):
    """Conv stages (:class:`ConvStage`) run in sequence, except that a stage's closing activation, when the next
    stage opens with a max-pool and the activation is non-decreasing (ReLU), runs after that pool: relu(max(x)) is
    max(relu(x)) value for value and gradient for gradient, and the activation then touches a quarter of the
    values (its forward and backward were about 8% of a training step). With ``norm_after_pool`` the stage's
    BatchNorm moves behind that pool too (conv -> max-pool -> BatchNorm -> ReLU): a different model, whose
    BatchNorm statistics are the pooled map's, with a quarter of the normalisation work (10% of a training step
    on the real-signal benchmark, at the same accuracy). The modules and their state-dict keys are those of the
    plain sequence either way."""

    def __init__(self, *stages: nn.Module, norm_after_pool: bool = False) -> None:
        super().__init__(*stages)
        self.norm_after_pool = norm_after_pool

    def execution_order(self) -> list[nn.Module]:
        """The stages' layers in the order they run."""
        layers = [layer for stage in self for layer in stage]
        for i in range(len(layers) - 1):
            if isinstance(layers[i], MONOTONIC_ACTIVATIONS) and isinstance(layers[i + 1], nn.MaxPool2d):
                layers[i], layers[i + 1] = layers[i + 1], layers[i]
        if self.norm_after_pool:
            for i in range(len(layers) - 1):
                if isinstance(layers[i], nn.BatchNorm2d) and isinstance(layers[i + 1], nn.MaxPool2d):
                    layers[i], layers[i + 1] = layers[i + 1], layers[i]
        return layers

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.execution_order():
            x = layer(x)
        return x


def _stages(
    in_chans: int,
    channels: Sequence[int],
    extra: int,
    first_stride: int,
    downsample: str = "stride",
    norm_after_pool: bool = False,
) -> ConvStack:
    """The first stage has stride ``first_stride``, every later one halves the resolution (``downsample``)."""
    chans = [in_chans, *channels]
    return ConvStack(
        *(
            ConvStage(chans[i], chans[i + 1], first_stride if i == 0 else 2, extra, downsample=downsample)
            for i in range(len(channels))
        ),
        norm_after_pool=norm_after_pool,
    )


class ConvImageEncoder(TokenEncoder):
    """Small CNN over the image; inputs ``{"image": uint8 [B, C, H, W], "present"}``.

    ``polarity_border`` first inverts an image whose border is mostly lighter than itself
    (:func:`canonical_polarity`: ink on paper and its negative read alike; None: off). ``standardise="image"``
    then subtracts each image's own mean and divides by its own std (per channel), so brightness and contrast
    (scans, photos of screens) do not need to be learned; ``"dataset"`` uses the fixed ``mean``/``std``. The
    stages after the first halve the resolution (``downsample``; the first one too with ``first_stride=2``: a
    quarter of the compute, for inputs larger than the details they hold) and a final adaptive pool
    (``grid_pool``: max or avg) gives at most ``grid`` x ``grid`` tokens whatever the image size;
    absent images never reach the BatchNorm statistics."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        image_size: int,
        in_chans: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        extra_convs: int = 0,
        first_stride: int = 1,
        downsample: str = "maxpool",
        grid: int = 8,
        grid_pool: str = "max",
        standardise: str = "image",
        polarity_border: Optional[float] = None,
        norm_after_pool: bool = False,
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.25,),
        channels_last: bool = True,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        **trunk_kwargs,
    ) -> None:
        if standardise not in IMAGE_STANDARDISE:
            raise ValueError(f"model.image.standardise must be one of {IMAGE_STANDARDISE}, got {standardise!r}")
        if first_stride not in (1, 2):
            raise ValueError(f"model.image.first_stride must be 1 or 2, got {first_stride}")
        if polarity_border is not None and not 0.5 < polarity_border <= 1.0:
            raise ValueError(
                f"model.image.polarity_border must be in (0.5, 1] (a share of the border's pixels) or null (off), "
                f"got {polarity_border}"
            )
        if grid_pool not in GRID_POOLS:
            raise ValueError(f"model.image.grid_pool must be one of {sorted(GRID_POOLS)}, got {grid_pool!r}")
        side = min(grid, conv_output_size(image_size, len(channels) - 2 + first_stride))
        super().__init__(dim, depth, num_heads, side * side, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.image_size, self.in_chans, self.standardise = image_size, in_chans, standardise
        self.polarity_border = polarity_border
        self.grid = (side, side)  # token layout (rows, cols), read by the attention figures
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone = _stages(in_chans, channels, extra_convs, first_stride, downsample, norm_after_pool).to(
            memory_format=self.memory_format
        )
        self.pool = GRID_POOLS[grid_pool](side)
        self.proj = nn.Linear(channels[-1], dim)
        self.register_buffer("mean", channel_stats(mean, in_chans), persistent=False)
        self.register_buffer("std", channel_stats(std, in_chans), persistent=False)
        self.adapt(freeze, lora, "model.image")

    def normalise(self, image: Tensor) -> Tensor:
        """uint8 [b, C, H, W] -> standardised float (after :func:`canonical_polarity` when it is on)."""
        x = image.float() / 255.0
        if self.polarity_border is not None:
            x = canonical_polarity(x, self.polarity_border)
        if self.standardise == "dataset":
            return (x - self.mean) / self.std
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        std = centred.square().mean(dim=(2, 3), keepdim=True).sqrt().clamp_min(STANDARDISE_EPS)
        return centred / std

    def embed(self, image: Tensor) -> Tensor:
        """uint8 [b, C, H, W] -> tokens [b, side*side, D]."""
        feat = self.pool(self.backbone(self.normalise(image).contiguous(memory_format=self.memory_format)))
        return self.proj(feat.flatten(2).transpose(1, 2))

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        image, present = inputs["image"], inputs["present"]
        if tuple(image.shape[1:]) != (self.in_chans, self.image_size, self.image_size):
            raise ValueError(
                f"ConvImageEncoder was built for {self.in_chans}x{self.image_size}x{self.image_size} images "
                f"(data_meta.image: channels, size), got {tuple(image.shape[1:])}"
            )
        tokens = self.encode_rows(present, lambda idx: self.embed(image.index_select(0, idx)))
        return tokens, present[:, None].expand(image.shape[0], self.num_positions)


def standardise_clips(mel: Tensor, valid: Tensor) -> Tensor:
    """Each clip's log-mel [b, n_mels, T] less its own mean, over its own standard deviation, both taken over its
    valid frames (``valid`` [b, T], 0/1) and every mel bin; invalid frames stay zero. A recording's gain adds a
    constant to its log-mel and its loudness range scales it, so neither reaches the network; the statistics never
    see another clip or the batch's padding."""
    weight = valid[:, None, :]
    count = (valid.sum(dim=1) * mel.shape[1]).clamp_min(1.0)[:, None, None]
    mean = (mel * weight).sum(dim=(1, 2), keepdim=True) / count
    centred = (mel - mean) * weight
    std = (centred.square().sum(dim=(1, 2), keepdim=True) / count).sqrt().clamp_min(STANDARDISE_EPS)
    return centred / std


class ConvAudioEncoder(TokenEncoder):
    """Small CNN over the log-mel spectrogram; inputs ``{"mel": [B, n_mels, T], "mask": [B, T], "present"}``.

    ``standardise="clip"`` standardises each clip by its own mean and std (:func:`standardise_clips`: gain and
    level do not need to be learned, as the image encoder's per-image standardisation does for brightness and
    contrast); ``"dataset"`` keeps the preprocessing stage's per-bin standardisation only. The spectrogram is a
    1-channel image [n_mels, T]; stages that halve both axes (the first one too:
    spectrograms are large; ``downsample``: max-pool or strided convolution) shrink it, then channels and the
    remaining frequency rows are flattened and projected: one token per ``2**stages`` frames. Padded frames are
    zeroed before every convolution, and a token is valid if any frame of its span is."""

    def __init__(
        self,
        n_mels: int,
        max_frames: int,
        dim: int,
        depth: int,
        num_heads: int,
        channels: Sequence[int] = (16, 32, 64),
        extra_convs: int = 0,
        downsample: str = "maxpool",
        norm_after_pool: bool = False,
        channels_last: bool = True,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        standardise: str = "dataset",
        **trunk_kwargs,
    ) -> None:
        if standardise not in AUDIO_STANDARDISE:
            raise ValueError(f"model.audio.standardise must be one of {AUDIO_STANDARDISE}, got {standardise!r}")
        stride = 2 ** len(channels)
        super().__init__(
            dim, depth, num_heads, -(-max_frames // stride), mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs
        )
        self.n_mels, self.max_frames, self.stride, self.standardise = n_mels, max_frames, stride, standardise
        self.patch_frames = stride  # frames per token, read by the attention figures
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.backbone = _stages(1, channels, extra_convs, 2, downsample, norm_after_pool).to(
            memory_format=self.memory_format
        )
        self.proj = nn.Linear(channels[-1] * conv_output_size(n_mels, len(channels)), dim)
        self.adapt(freeze, lora, "model.audio")

    def embed(self, mel: Tensor, mask: Tensor) -> Tensor:
        """[b, n_mels, T] (T a multiple of the stride), token mask [b, T / stride] -> tokens [b, T / stride, D].

        The time steps of invalid tokens are zeroed before every convolution, as the convolution's own zero
        padding would be at the end of an unpadded clip: a clip's tokens do not depend on how long its batch
        is padded (with max-pool downsampling a stride-1 convolution would otherwise read the activations of
        padded frames)."""
        x = mel[:, None].contiguous(memory_format=self.memory_format)
        for layer in self.backbone.execution_order():
            if isinstance(layer, nn.Conv2d):
                x = x * mask.repeat_interleave(x.shape[-1] // mask.shape[1], dim=1)[:, None, None].to(x.dtype)
            x = layer(x)
        return self.proj(x.flatten(1, 2).transpose(1, 2))  # [b, C, F', T'] -> [b, T', D]

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mel, present = inputs["mel"], inputs["present"]
        if mel.shape[1] != self.n_mels or mel.shape[2] > self.max_frames:
            raise ValueError(
                f"ConvAudioEncoder was built for {self.n_mels} mel bins and at most {self.max_frames} "
                f"frames (data_meta.audio), got {tuple(mel.shape[1:])}"
            )
        mel, valid = _pad_frames(mel, inputs["mask"] & present[:, None], -mel.shape[-1] % self.stride)
        if self.standardise == "clip":
            mel = standardise_clips(mel, valid)
        mask = valid.unflatten(1, (-1, self.stride)).amax(dim=-1) > 0
        tokens = self.encode_rows(
            mask.any(dim=1), lambda idx: self.embed(mel.index_select(0, idx), mask.index_select(0, idx)), mask
        )
        return tokens, mask


class ConvTextEncoder(TokenEncoder):
    """Token embeddings -> ``convs`` residual 1-D convolutions (kernel ``kernel_size``) -> the trunk; inputs
    ``{"tokens", "mask", "present"}``. Padding positions are zeroed before every convolution, so a text's
    tokens do not depend on how much padding its batch has."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        depth: int,
        num_heads: int,
        max_len: int,
        convs: int = 2,
        kernel_size: int = 3,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pad_id: int = 0,
        freeze: bool = False,
        lora: Optional[Mapping[str, Any]] = None,
        **trunk_kwargs,
    ) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"model.text.kernel_size must be odd (same-length convolution), got {kernel_size}")
        super().__init__(dim, depth, num_heads, max_len, mlp_ratio=mlp_ratio, dropout=dropout, **trunk_kwargs)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2) for _ in range(convs))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(convs))
        self.adapt(freeze, lora, "model.text")

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        mask = inputs["mask"] & inputs["present"][:, None]
        keep = mask[..., None].to(self.pos_embed.dtype)
        x = self.embed(inputs["tokens"]) * keep
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = x + F.gelu(conv(norm(x).mul(keep).transpose(1, 2)).transpose(1, 2)) * keep
        return self.encode(x, mask), mask
