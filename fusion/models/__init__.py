"""Pure-torch attention-based multimodal fusion models (tensors in, tensors out)."""

from fusion.models.attention import Attention, AttentionPool, Block, CrossBlock, Mlp
from fusion.models.builder import build_model
from fusion.models.encoders import AudioEncoder, ImageEncoder, TextEncoder
from fusion.models.fusions import FUSIONS, CrossAttentionFusion, LateFusion, build_fusion, register_fusion
from fusion.models.model import MultimodalClassifier

__all__ = [
    "Attention",
    "AttentionPool",
    "AudioEncoder",
    "Block",
    "CrossAttentionFusion",
    "CrossBlock",
    "FUSIONS",
    "ImageEncoder",
    "LateFusion",
    "Mlp",
    "MultimodalClassifier",
    "TextEncoder",
    "build_fusion",
    "build_model",
    "register_fusion",
]
