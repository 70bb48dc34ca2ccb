"""A new fusion is one module in fusion/models/fusions/ plus one conf/fusion/*.yaml: in a temporary copy of the
package and its configs, a toy fusion added that way composes, builds, shows attention maps in explain and
is a row of the compare table, with no other file edited."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOY_MODULE = '''
"""Toy fusion for the plugin test: the mean of the modalities' pooled vectors."""

import torch

from fusion.models.fusions.pooling import PooledFusion, stack_modalities
from fusion.models.fusions.registry import register_fusion


@register_fusion("toy_mean")
class ToyMeanFusion(PooledFusion):
    def __init__(self, modalities, dim, **pool_kwargs):
        super().__init__(modalities, dim, **pool_kwargs)
        self.out_dim = dim

    def fuse(self, pooled, present):
        return stack_modalities(pooled, self.modalities).mean(1)
'''

CHECK = """
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from fusion.config import compose
from fusion.explain.capture import captured_attention
from fusion.explain.maps import attention_maps
from fusion.models.builder import build_model
from fusion.tracking.compare import compare_runs
from fusion.tracking.mlflow_logger import flat_params

cfg = compose(["fusion=toy_mean", "model.dim=16", "model.num_heads=2"])
meta = {"text": {"tokenizer": "ngram", "vocab_size": 30, "pad_id": 0, "max_len": 6},
        "image": {"size": 32, "channels": 3}, "audio": {"n_mels": 8, "max_frames": 10}}
net = build_model(cfg.model, cfg.fusion, ["text", "audio"], meta, num_classes=3).eval()
present = torch.ones(2, dtype=torch.bool)
batch = {"text": {"tokens": torch.randint(1, 30, (2, 6)), "mask": torch.ones(2, 6, dtype=torch.bool),
                  "present": present},
         "audio": {"mel": torch.randn(2, 8, 10), "mask": torch.ones(2, 10, dtype=torch.bool), "present": present}}
with torch.no_grad(), captured_attention(net) as records:
    net(batch)
maps = attention_maps(net.fusion, records)
print("explain", sorted(maps.tokens), tuple(maps.tokens["text"].shape))

client = MlflowClient(tracking_uri="sqlite:///runs.db")
experiment = client.create_experiment("fusion")
run = client.create_run(experiment, tags={"modality": "text+audio"}).info.run_id
client.log_batch(run, metrics=[Metric("test/acc", 0.5, 0, 0)],
                 params=[Param(k, str(v)) for k, v in flat_params(cfg).items() if k.startswith(("fusion", "task"))])
client.set_terminated(run, "FINISHED")
print("compare", [row.fusion for table in compare_runs("sqlite:///runs.db", "fusion").tables for row in table.rows])
"""


@pytest.mark.slow
def test_a_fusion_is_one_module_and_one_yaml(tmp_path):
    repo = tmp_path / "repo"
    for folder in ("fusion", "conf"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "fusion/models/fusions/toy_mean.py").write_text(TOY_MODULE, encoding="utf-8")
    (repo / "conf/fusion/toy_mean.yaml").write_text("name: toy_mean\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "explain ['audio', 'text'] (2, 6)" in result.stdout
    assert "compare ['toy_mean']" in result.stdout
