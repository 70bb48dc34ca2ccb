"""Attention insight: recorded weights against a reference computation, the per-fusion maps (distributions over
valid tokens, absent modalities, gates, attention mass), removal contributions, and a real run's explain
artifacts and `python -m fusion.explain`."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from fusion.config import compose
from fusion.data.ablation import drop_modalities
from fusion.explain.capture import captured_attention
from fusion.explain.contribution import output_change, removal_changes, split_removal
from fusion.explain.maps import BOTTLENECKS, LATENTS, attention_maps
from fusion.models.attention import Attention
from fusion.models.builder import build_model
from fusion.tasks.labels import SingleLabel
from fusion.tasks.objectives import build_task
from tests.helpers.config import tiny_config
from tests.helpers.models import FUSION_NAMES, META, MODALITIES, fusion_cfg, make_batch, make_model, model_cfg

ROOT = Path(__file__).resolve().parents[1]


def _maps(fusion, batch, modalities=MODALITIES):
    net = make_model(fusion, modalities).eval()
    inputs = {m: batch[m] for m in modalities}
    with torch.no_grad(), captured_attention(net) as records:
        out = net(inputs)
        _, masks = net.encode(inputs)
    return net, out, attention_maps(net.fusion, records), masks


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_capture_changes_no_output_and_removes_its_hooks(fusion):
    batch = make_batch(
        MODALITIES, {"text": [True, False, True], "image": [True, True, False], "audio": [False, True, True]}
    )
    net = make_model(fusion, MODALITIES).eval()
    with torch.no_grad():
        plain = net(batch)
        with captured_attention(net) as records:
            captured = net(batch)
    assert torch.equal(plain, captured)
    assert records, "no attention layer recorded"
    assert all(not m._forward_hooks for m in net.modules() if isinstance(m, Attention))


def test_pool_weights_equal_a_reference_softmax():
    """The late fusion's text pool: softmax(q k^T / sqrt(d)) of the latent query over the valid text tokens."""
    batch = make_batch(MODALITIES, {m: [True, True] for m in MODALITIES})
    net, _, maps, masks = _maps("late", batch)
    tokens, _ = net.encode(batch)
    pool = net.fusion.pool["text"]
    attn = pool.attn
    x = pool.norm1(tokens["text"])
    q = attn.q(pool.latent).reshape(1, attn.num_heads, attn.head_dim)  # [1, H, d]
    k = attn.kv(x)[..., : x.shape[-1]].reshape(x.shape[0], x.shape[1], attn.num_heads, attn.head_dim)
    logits = torch.einsum("hd,bnhd->bhn", q[0], k) * attn.head_dim**-0.5
    logits = logits.masked_fill(~masks["text"][:, None, :], float("-inf"))
    expected = logits.softmax(-1).mean(1)
    torch.testing.assert_close(maps.tokens["text"], expected.detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_token_weights_are_distributions_over_valid_tokens(fusion):
    batch = make_batch(MODALITIES, {"text": [True, False], "image": [True, True], "audio": [True, True]})
    _, _, maps, masks = _maps(fusion, batch)
    assert set(maps.tokens) == set(MODALITIES)
    for m, weights in maps.tokens.items():
        assert torch.all(weights[~masks[m]] == 0), f"{fusion}: {m} padding got attention"
        assert torch.all(weights >= 0)
        sums = weights.sum(-1)
        expected = maps.mass[m] if maps.mass and fusion in ("early", "perceiver") else masks[m].any(-1).float()
        torch.testing.assert_close(sums, expected.float(), atol=1e-5, rtol=1e-5)
    assert float(maps.tokens["text"][1].sum()) == 0.0  # text absent in sample 1
    if maps.mass:
        total = sum(maps.mass.values())
        torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=1e-5)
        assert float(maps.mass["text"][1]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("fusion", ["cross_attention", "co_attention", "early", "perceiver", "bottleneck"])
def test_cross_modal_maps_have_the_token_axes_and_ignore_masked_keys(fusion):
    batch = make_batch(MODALITIES, {m: [True, True] for m in MODALITIES})
    net, _, maps, masks = _maps(fusion, batch)
    assert maps.cross, f"{fusion} has no cross-modal map"
    n = {m: masks[m].shape[1] for m in MODALITIES}
    for (query, key), matrix in maps.cross.items():
        assert matrix.shape[0] == 2 and matrix.shape[2] == n[key]
        if query in n:
            assert matrix.shape[1] == n[query]
        else:
            assert query in (LATENTS, BOTTLENECKS)
        assert torch.all(matrix.permute(0, 2, 1)[~masks[key]] == 0), f"{query}->{key}: a masked key got weight"
    if fusion == "cross_attention":  # one softmax per query over the source's valid tokens
        rows = maps.cross[("text", "image")].sum(-1)
        torch.testing.assert_close(rows, torch.ones_like(rows), atol=1e-5, rtol=1e-5)


def _reference_weights(attn: Attention, x, context, key_mask) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) of one attention layer's inputs, masked keys excluded, averaged over heads."""
    B, Nq, _ = x.shape
    q = attn.q(x).reshape(B, Nq, attn.num_heads, attn.head_dim)
    k = attn.kv(context)[..., : x.shape[-1]].reshape(B, context.shape[1], attn.num_heads, attn.head_dim)
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) * attn.head_dim**-0.5
    logits = logits.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return logits.softmax(-1).mean(1)


@pytest.mark.parametrize("layer", ["last", "mean"])
def test_cross_attention_maps_equal_a_reference_softmax(layer):
    """MulT's crossmodal maps (target queries over source keys) equal a hand-written softmax of the inputs of
    each pair's CrossBlocks, head-averaged, for the last layer or the mean over two layers."""
    net = build_model(
        model_cfg(), OmegaConf.merge(fusion_cfg("cross_attention"), {"depth": 2}), MODALITIES, META, num_classes=3
    ).eval()
    torch.manual_seed(0)
    batch = make_batch(MODALITIES, {m: [True, True, True] for m in MODALITIES})
    inputs, hooks = {}, []
    for pair, blocks in net.fusion.cross.items():
        for i, block in enumerate(blocks):

            def keep(module, args, kwargs, key=(pair, i)):
                inputs[key] = (args[0], args[1], kwargs["key_mask"])

            hooks.append(block.attn.register_forward_pre_hook(keep, with_kwargs=True))
    try:
        with torch.no_grad(), captured_attention(net) as records:
            net(batch)
    finally:
        for hook in hooks:
            hook.remove()
    maps = attention_maps(net.fusion, records, layer=layer)
    layers_differ = []
    for target, source in (("text", "image"), ("audio", "image"), ("image", "text"), ("text", "audio")):
        pair = net.fusion._pair(source, target)
        with torch.no_grad():
            per_layer = [_reference_weights(net.fusion.cross[pair][i].attn, *inputs[(pair, i)]) for i in (0, 1)]
        expected = per_layer[-1] if layer == "last" else torch.stack(per_layer).mean(0)
        layers_differ.append(not torch.allclose(per_layer[0], per_layer[1]))
        torch.testing.assert_close(maps.cross[(target, source)], expected, atol=1e-6, rtol=1e-5)
    assert any(layers_differ)  # so the choice of layer is checked too


def test_gated_fusion_reports_gates_that_share_one_over_present_modalities():
    batch = make_batch(MODALITIES, {"text": [True, False], "image": [True, True], "audio": [True, True]})
    _, _, maps, _ = _maps("gated", batch)
    gates = torch.stack([maps.gates[m] for m in MODALITIES], dim=1)
    torch.testing.assert_close(gates.sum(1), torch.ones(2), atol=1e-5, rtol=1e-5)
    assert float(maps.gates["text"][1]) == 0.0


def _multiclass_task():
    return build_task(compose().task, SingleLabel({"classes": ["a", "b", "c"]}))


def test_output_change_is_the_drop_of_the_predicted_class_probability():
    task = _multiclass_task()
    full = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    without = torch.tensor([[0.4, 0.5, 0.1], [0.2, 0.2, 0.6]])
    torch.testing.assert_close(output_change(task, full, without), torch.tensor([0.3, 0.0]))


def test_removal_changes_equal_scores_with_the_modality_dropped():
    task = _multiclass_task()
    batch = make_batch(MODALITIES, {"text": [True, False], "image": [True, True], "audio": [True, True]})
    batch["label"] = torch.tensor([0, 2])
    net = make_model("late", MODALITIES).eval()
    changes = removal_changes(net, task, batch)
    assert math.isnan(float(changes["text"][1]))  # nothing to remove
    with torch.no_grad():
        full = task.scores(net(batch))
        without = task.scores(net(drop_modalities(batch, ["image"])))
    predicted = full.argmax(-1)
    expected = full[torch.arange(2), predicted] - without[torch.arange(2), predicted]
    torch.testing.assert_close(changes["image"], expected)
    split = split_removal(net, task, [batch])
    with torch.no_grad():
        acc_without = float(
            (task.scores(net(drop_modalities(batch, ["image"]))).argmax(-1) == batch["label"]).float().mean()
        )
    acc = float((predicted == batch["label"]).float().mean())
    assert split["image"]["metric"] == pytest.approx(acc)
    assert split["image"]["metric_drop"] == pytest.approx(acc - acc_without)
    assert split["image"]["change"] == pytest.approx(float(expected.mean()))


@pytest.fixture(scope="module")
def explained_run(processed_dir, tmp_path_factory):
    """A tiny tri-modal gated run trained and tested by the real train(): explain/ and model/ logged."""
    from fusion.stages.train import train

    tmp = tmp_path_factory.mktemp("explain")
    cfg = tiny_config(tmp, processed_dir, ["fusion=gated", "trainer.max_epochs=1", "explain.samples=2"])
    train(cfg)
    run_id = json.loads((tmp / "train" / "run.json").read_text())["run_id"]
    return cfg, tmp, run_id


@pytest.mark.slow
def test_a_tested_run_logs_attention_figures_contributions_and_its_model(explained_run):
    cfg, tmp, run_id = explained_run
    client = MlflowClient(cfg.logger.tracking_uri)
    summary = json.loads(Path(client.download_artifacts(run_id, "explain/summary.json", str(tmp))).read_text())
    assert len(summary["samples"]) == 2 and summary["fusion"] == "gated"
    names = {a.path for a in client.list_artifacts(run_id, "explain")}
    assert {"explain/contribution.png", "explain/contribution.csv", "explain/index.html"} <= names
    for sample in summary["samples"]:
        files = {Path(f).name for f in summary["files"][sample["id"]]}
        assert {"text_attention.html", "text_attention.png", "image_attention.png", "audio_attention.png"} <= files
        assert set(sample["contribution"]) == {"drop in predicted-class probability when removed", "gate value"}
        assert sum(sample["contribution"]["gate value"].values()) == pytest.approx(1.0, abs=1e-4)
        logged = {a.path for a in client.list_artifacts(run_id, f"explain/{sample['folder']}")}
        assert f"explain/{sample['folder']}/image_attention.png" in logged
    per_modality = summary["split"]["per_modality"]
    metrics = client.get_run(run_id).data.metrics
    for m in ("text", "image", "audio"):  # the same drop the run logged as test/acc_without_<m>
        assert per_modality[m]["metric_without"] == pytest.approx(metrics[f"test/acc_without_{m}"], abs=1e-6)
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(run_id, "model")}


@pytest.mark.slow
def test_explain_cli_regenerates_the_figures_of_any_sample(explained_run, subprocess_env, tmp_path):
    cfg, tmp, run_id = explained_run
    records = [json.loads(line) for line in (Path(cfg.data.processed_dir) / "text" / "records.jsonl").open()]
    sample_id = next(r["id"] for r in records if r["split"] == "train")  # not one of the fixed test samples
    out = tmp_path / "out"
    scratch = tmp_path / "scratch"  # the CLIs' temporary folder: each run's model download must go from it
    scratch.mkdir()
    env = {**subprocess_env, "TMPDIR": str(scratch)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion.explain",
            f"run_id={run_id}",
            f"sample_id={sample_id}",
            f"tracking_uri={cfg.logger.tracking_uri}",
            f"output={out}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sample_id in result.stdout and "gate value" in result.stdout
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("fusion-")]
    folder = next(p for p in out.iterdir() if p.is_dir())
    assert {"text_attention.png", "image_attention.png", "audio_attention.png"} <= {p.name for p in folder.iterdir()}
    client = MlflowClient(cfg.logger.tracking_uri)
    assert client.list_artifacts(run_id, f"explain/requested/{folder.name}")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusion.explain",
            f"run_id={run_id}",
            "sample_id=no-such-id",
            f"tracking_uri={cfg.logger.tracking_uri}",
            "log=false",
            f"output={tmp_path / 'bad'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "no-such-id" in bad.stderr and "Traceback" not in bad.stderr
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("fusion-")]  # removed on an error too
