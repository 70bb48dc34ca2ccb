"""Baseline 2: MultiBench's late-fusion recipe (Liang et al., NeurIPS 2021 datasets track, AV-MNIST example):
a LeNet per modality, features concatenated, an MLP head, plain SGD for 30 epochs, the epoch with the best
validation accuracy kept.

- image: LeNet(1, 6, 3) on the 28×28 grayscale image (a 5×5 conv, then three pool + 3×3 conv stages doubling
  the channels, batch norm, global max pooling: 48 features);
- audio: LeNet(1, 6, 5) on the 64×97 log-mel (192 features);
- text (not in AV-MNIST): a bag of character n-grams (the TF-IDF of baselines/features.py, standardised per
  n-gram) through a one-layer MLP (64 features).

A missing modality is a zero input plus a missing flag appended to the fused features. "Alone" accuracies come
from the same recipe trained on one modality; "without" ones from the fused network with that modality
marked missing in every test record.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmarks.accuracy.baselines.features import standardiser, text_vectorizer
from benchmarks.accuracy.baselines.rawdata import MODALITIES, RawDataset
from benchmarks.accuracy.baselines.scoring import BaselineResult, accuracy, macro_f1
from benchmarks.accuracy.timing import timed

NAME = "lenet"
EPOCHS = 30
BATCH_SIZE = 40  # MultiBench's AV-MNIST loaders
LEARNING_RATE = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4  # MultiBench's
CHANNELS = 6  # LeNet(1, 6, ...) as MultiBench's AV-MNIST encoders
EXTRA_LAYERS = {"image": 3, "audio": 5}
TEXT_FEATURES = 64
HEAD_HIDDEN = 100  # MultiBench's MLP(channels * 40, 100, 10) head


class LeNet(nn.Module):
    """A 5×5 conv, then `extra_layers` × (max-pool 2, 3×3 conv doubling the channels), batch norm and ReLU after
    each conv, global max pooling: [B, in, H, W] -> [B, channels × 2^extra_layers]."""

    def __init__(self, in_channels: int, channels: int, extra_layers: int):
        super().__init__()
        layers = [nn.Conv2d(in_channels, channels, 5, padding=2, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        for i in range(extra_layers):
            width = channels * 2**i
            layers += [
                nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
                nn.BatchNorm2d(2 * width),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.out_features = channels * 2**extra_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.body(x), dim=(2, 3))


class BagOfNgrams(nn.Module):
    """TF-IDF vector -> ReLU(linear) features."""

    def __init__(self, vocabulary: int, features: int = TEXT_FEATURES):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(vocabulary, features), nn.ReLU())
        self.out_features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LateFusionNet(nn.Module):
    """Encoders of the given modalities, their features and missing flags concatenated, an MLP head."""

    def __init__(self, modalities: list[str], vocabulary: int, classes: int):
        super().__init__()
        self.modalities = modalities
        self.encoders = nn.ModuleDict(
            {m: BagOfNgrams(vocabulary) if m == "text" else LeNet(1, CHANNELS, EXTRA_LAYERS[m]) for m in modalities}
        )
        width = sum(e.out_features for e in self.encoders.values()) + len(modalities)
        self.head = nn.Sequential(nn.Linear(width, HEAD_HIDDEN), nn.ReLU(), nn.Linear(HEAD_HIDDEN, classes))

    def forward(self, inputs: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for m in self.modalities:
            mask = present[m].float()
            shape = (-1,) + (1,) * (inputs[m].dim() - 1)
            parts.append(self.encoders[m](inputs[m] * mask.view(shape)))
        flags = torch.stack([1.0 - present[m].float() for m in self.modalities], dim=1)
        return self.head(torch.cat([*parts, flags], dim=1))


def tensors(data: RawDataset) -> tuple[dict[str, torch.Tensor], int]:
    """Network inputs for every record, standardised with the statistics of the training records that have the
    modality (text: per n-gram column of the TF-IDF; image: one mean for all pixels; audio: one per mel band),
    and the text vocabulary size."""
    train = data.split("train")
    values = {"image": data.images, "audio": data.audio}
    if "text" in data.modalities:
        vectorizer = text_vectorizer().fit([data.texts[i] for i in train[data.present["text"][train]]])
        values["text"] = vectorizer.transform(data.texts).toarray()
    axes = {"text": (0,), "image": (0, 1, 2, 3), "audio": (0, 1, 3)}
    inputs = {}
    for modality in data.modalities:
        mean, std = standardiser(values[modality], train[data.present[modality][train]], axes[modality])
        inputs[modality] = torch.from_numpy(((values[modality] - mean) / std).astype(np.float32))
    return inputs, inputs["text"].shape[1] if "text" in inputs else 0


def train_net(
    data: RawDataset, inputs: dict[str, torch.Tensor], vocabulary: int, modalities: list[str], seed: int, epochs: int
) -> tuple[LateFusionNet, float]:
    """SGD on the training split; the weights of the epoch with the best validation accuracy, and that accuracy
    (without validation records: the last epoch's weights, and NaN)."""
    torch.manual_seed(seed)
    net = LateFusionNet(modalities, vocabulary, len(data.classes))
    optimiser = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    labels = torch.from_numpy(data.labels)
    present = {m: torch.from_numpy(data.present[m]) for m in MODALITIES}
    train, val = torch.from_numpy(data.split("train")), data.split("val")
    generator = torch.Generator().manual_seed(seed)
    best_acc, best_state = -1.0, None
    for _ in range(epochs):
        net.train()
        for batch in train[torch.randperm(len(train), generator=generator)].split(BATCH_SIZE):
            if len(batch) < 2:  # batch norm needs two samples
                continue
            loss = nn.functional.cross_entropy(
                net({m: inputs[m][batch] for m in modalities}, {m: present[m][batch] for m in modalities}),
                labels[batch],
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        val_acc = accuracy(predict(net, inputs, present, val), data.labels[val])
        if not len(val) or val_acc > best_acc:
            best_acc, best_state = val_acc, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return net, best_acc


@torch.no_grad()
def predict(
    net: LateFusionNet,
    inputs: dict[str, torch.Tensor],
    present: dict[str, torch.Tensor],
    rows: np.ndarray,
    removed: str | None = None,
) -> np.ndarray:
    """Class predictions for `rows`, with modality `removed` (if any) marked missing in every one."""
    net.eval()
    index = torch.from_numpy(rows)
    flags = {m: present[m][index] & (m != removed) for m in net.modalities}
    return net({m: inputs[m][index] for m in net.modalities}, flags).argmax(1).numpy()


def run(data: RawDataset, seed: int, epochs: int = EPOCHS, unimodal: bool = True) -> BaselineResult:
    """The fused network (timed), then one network per modality for the "alone" figures (timed apart)."""
    test = data.split("test")
    present = {m: torch.from_numpy(data.present[m]) for m in MODALITIES}
    with timed() as fused_time:
        inputs, vocabulary = tensors(data)
        with timed() as fitting:
            net, val_acc = train_net(data, inputs, vocabulary, data.modalities, seed, epochs)
        predictions = predict(net, inputs, present, test)
        test_acc = accuracy(predictions, data.labels[test])
        test_f1 = macro_f1(predictions, data.labels[test])
        without = {
            m: accuracy(predict(net, inputs, present, test, removed=m), data.labels[test]) for m in data.modalities
        }
    alone, seconds = {}, {}
    for modality in data.modalities if unimodal else ():
        with timed() as one:
            single, _ = train_net(data, inputs, vocabulary, [modality], seed, epochs)
            alone[modality] = accuracy(predict(single, inputs, present, test), data.labels[test])
        seconds[modality] = one.cpu
    return BaselineResult(
        test_acc=test_acc,
        val_acc=val_acc,
        test_f1_macro=test_f1,
        alone=alone,
        without=without,
        cpu_seconds=fused_time.cpu,
        wall_seconds=fused_time.wall,
        fit_seconds=fitting.wall,
        fit_cpu_seconds=fitting.cpu,
        unimodal_cpu_seconds=seconds,
        details={"epochs": epochs, "vocabulary": vocabulary},
    )
