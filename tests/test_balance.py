"""Modality balance (OGM-GE coefficients, gradient modulation), modality heads and the step schedule."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from fusion.config import compose
from fusion.models.builder import build_model
from fusion.models.model import (
    HEAD_VOTES,
    ModalityHead,
    head_vote,
    hybrid_of_experts,
    mixture_of_experts,
    product_of_experts,
)
from fusion.tasks.labels import SingleLabel
from fusion.tasks.objectives import build_task
from fusion.training.balance import modulate_gradients, ogm_coefficients
from fusion.training.module import FusionModule
from fusion.training.schedule import WarmupCosine
from tests.helpers.models import META, fusion_cfg, make_batch, model_cfg


def test_ogm_coefficients_follow_the_paper_for_two_modalities():
    # Peng et al. 2022, eq. 10: k = 1 - tanh(alpha * rho) for the modality whose ratio rho > 1, else 1.
    coeff = ogm_coefficients({"audio": 0.9, "image": 0.3}, alpha=0.5)
    assert coeff["image"] == 1.0
    assert coeff["audio"] == pytest.approx(1 - math.tanh(0.5 * 3.0))


def test_ogm_coefficients_with_three_modalities_compare_to_the_others_mean():
    coeff = ogm_coefficients({"a": 0.8, "b": 0.4, "c": 0.4}, alpha=1.0)
    assert coeff["a"] == pytest.approx(1 - math.tanh(2.0)) and coeff["b"] == coeff["c"] == 1.0
    assert ogm_coefficients({"a": 0.5}, alpha=1.0) == {"a": 1.0}
    assert ogm_coefficients({"a": 0.5, "b": 0.0}, alpha=1.0)["a"] == 1.0  # no baseline to compare with


def test_modulate_gradients_scales_and_adds_noise_of_the_gradient_scale():
    enc = {"a": nn.Linear(50, 50), "b": nn.Linear(50, 50)}
    for m in enc.values():
        for p in m.parameters():
            p.grad = torch.ones_like(p) * 2.0
    modulate_gradients(enc, {"a": 0.25, "b": 1.0}, noise=False)
    assert torch.all(enc["a"].weight.grad == 0.5) and torch.all(enc["b"].weight.grad == 2.0)
    torch.manual_seed(0)
    grad = torch.randn(50, 50)
    enc["a"].weight.grad = grad.clone()
    modulate_gradients({"a": enc["a"]}, {"a": 0.5}, noise=True)
    added = enc["a"].weight.grad - grad * 0.5
    assert added.std().item() == pytest.approx((grad * 0.5).std().item(), rel=0.1)


def test_modality_head_averages_valid_tokens_only():
    head = ModalityHead(4, 3)
    tokens = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    out = head(tokens, mask)
    expected0 = head.fc(head.norm(tokens[0, :2].mean(dim=0)))
    torch.testing.assert_close(out[0], expected0)
    torch.testing.assert_close(out[1], head.fc(head.norm(torch.zeros(4))))


def _experts() -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Fused logits, two heads' logits and their token masks for 3 samples of 4 classes; sample 1 has no image."""
    logits = torch.randn(3, 4)
    heads = {"image": torch.randn(3, 4), "audio": torch.randn(3, 4)}
    masks = {"image": torch.tensor([[True, False], [False, False], [True, True]]), "audio": torch.ones(3, 5).bool()}
    return logits, heads, masks


def test_product_of_experts_adds_the_log_probabilities_of_present_heads_only():
    logits, heads, masks = _experts()
    out = product_of_experts(logits, heads, masks)
    log_p = {name: x.log_softmax(dim=-1) for name, x in {"fused": logits, **heads}.items()}
    torch.testing.assert_close(out[0], log_p["fused"][0] + log_p["image"][0] + log_p["audio"][0])
    torch.testing.assert_close(out[1], log_p["fused"][1] + log_p["audio"][1])  # no image: its head abstains
    torch.testing.assert_close(out[2], log_p["fused"][2] + log_p["image"][2] + log_p["audio"][2])


def test_mixture_of_experts_is_the_log_of_the_present_experts_mean_probability():
    logits, heads, masks = _experts()
    out = mixture_of_experts(logits, heads, masks)
    p = {name: x.softmax(dim=-1) for name, x in {"fused": logits, **heads}.items()}
    torch.testing.assert_close(out[0].exp(), (p["fused"][0] + p["image"][0] + p["audio"][0]) / 3)
    torch.testing.assert_close(out[1].exp(), (p["fused"][1] + p["audio"][1]) / 2)  # no image: its head abstains
    torch.testing.assert_close(out.exp().sum(dim=-1), torch.ones(3))


def test_mixture_of_experts_lets_no_overconfident_head_veto_a_class():
    """A head certain of class 0 (logit gap 1e4: its probability of every other class underflows to 0) leaves the
    other classes finite scores, and the fused head's choice wins where the other experts agree with it; the
    product follows the one certain head."""
    logits = torch.tensor([[0.0, 6.0, 0.0]])
    heads = {"image": torch.tensor([[0.0, 6.0, 0.0]]), "audio": torch.tensor([[1e4, 0.0, 0.0]])}
    masks = {m: torch.ones(1, 2, dtype=torch.bool) for m in heads}
    mixed = mixture_of_experts(logits, heads, masks)
    assert torch.isfinite(mixed).all() and int(mixed.argmax()) == 1
    assert int(product_of_experts(logits, heads, masks).argmax()) == 0


def test_hybrid_blends_the_fused_head_evenly_with_the_present_heads_mean():
    logits, heads, masks = _experts()
    masks["audio"] = torch.tensor([[True], [False], [True]]).expand(3, 5)  # sample 1 holds no head's modality
    out = hybrid_of_experts(logits, heads, masks)
    p = {name: x.softmax(dim=-1) for name, x in {"fused": logits, **heads}.items()}
    torch.testing.assert_close(out[0].exp(), p["fused"][0] / 2 + (p["image"][0] + p["audio"][0]) / 4)
    torch.testing.assert_close(out[1], logits[1].log_softmax(dim=-1))  # no head present: the fused head alone
    torch.testing.assert_close(out.exp().sum(dim=-1), torch.ones(3))


def test_hybrid_keeps_half_the_say_for_the_fused_head_where_the_mean_lets_weak_heads_outvote_it():
    """Three heads leaning to class 0 (0.7) against a fused head sure of class 1 (0.9): their plain mean picks class
    0 (0.55), the hybrid class 1 (0.4 for class 0); a head certain of a class vetoes none either."""
    logits = torch.tensor([[0.1, 0.9]]).log()
    heads = {m: torch.tensor([[0.7, 0.3]]).log() for m in ("text", "image", "audio")}
    masks = {m: torch.ones(1, 2, dtype=torch.bool) for m in heads}
    assert int(mixture_of_experts(logits, heads, masks).argmax()) == 0
    hybrid = hybrid_of_experts(logits, heads, masks)
    torch.testing.assert_close(hybrid.exp(), torch.tensor([[0.4, 0.6]]))
    certain = {**heads, "audio": torch.tensor([[1e4, 0.0]])}
    assert torch.isfinite(hybrid_of_experts(logits, certain, masks)).all()


def test_head_vote_reads_the_config_value():
    assert head_vote(False) is None and head_vote(None) is None
    assert head_vote(True) == "product"  # the one rule of older configs and model bundles
    assert [head_vote(rule) for rule in HEAD_VOTES] == list(HEAD_VOTES)
    with pytest.raises(ValueError, match="model.predict_with_heads must be false, hybrid, mean or product, got 'sum'"):
        head_vote("sum")


@pytest.mark.parametrize("rule", [True, "product", "mean", "hybrid"])
def test_predict_with_heads_changes_predictions_only_in_eval_mode(rule):
    """Training sees the fused head's logits; eval (validation, test, serving) the experts' vote, and
    with_modality_logits still returns every head's own logits."""
    modalities = ["text", "image", "audio"]
    torch.manual_seed(0)
    fused_only = OmegaConf.merge(model_cfg(), {"predict_with_heads": False})
    plain = build_model(fused_only, fusion_cfg("late"), modalities, META, num_classes=3)
    combined = build_model(
        OmegaConf.merge(model_cfg(), {"predict_with_heads": rule}), fusion_cfg("late"), modalities, META, 3
    )
    combined.load_state_dict(plain.state_dict())
    present = {"text": [True, False, True], "image": [True, True, False], "audio": [False, True, True]}
    batch = make_batch(modalities, present)
    for net in (plain, combined):
        net.eval()
    with torch.no_grad():
        fused, heads = plain(batch, with_modality_logits=True)
        out, same_heads = combined(batch, with_modality_logits=True)
        masks = plain.encode(batch)[1]
        torch.testing.assert_close(out, HEAD_VOTES[head_vote(rule)](fused, heads, masks))
        torch.testing.assert_close(combined(batch), out)
        for m in modalities:
            torch.testing.assert_close(same_heads[m], heads[m])
        combined.train()
        plain.train()
        torch.manual_seed(1)
        trained = combined(batch)
        torch.manual_seed(1)
        torch.testing.assert_close(trained, plain(batch))


@pytest.mark.parametrize("rule", ["product", "mean", "hybrid"])
def test_predict_with_heads_without_heads_or_for_other_tasks_predicts_with_the_fused_head(rule):
    """The vote combines class probabilities of modality heads: a model without heads, or for a multilabel or
    regression task, outputs the fused head's logits in eval mode (so one config may set the rule for every task); a
    misspelt rule is refused either way."""
    modalities = ["image", "audio"]
    batch = make_batch(modalities, {"image": [True, False], "audio": [True, True]})
    cfg = OmegaConf.merge(model_cfg(), {"predict_with_heads": rule})
    without_heads = build_model(
        OmegaConf.merge(cfg, {"modality_heads": False}), fusion_cfg("late"), modalities, META, 3
    )
    multilabel = build_model(cfg, fusion_cfg("late"), modalities, META, 3, multiclass=False)
    for net in (without_heads, multilabel):
        net.eval()
        assert net.predict_with_heads is None
        with torch.no_grad():
            tokens, masks = net.encode(batch)
            fused = net.head(net.norm(net.fusion(tokens, masks)))
            torch.testing.assert_close(net(batch), fused)
    assert build_model(cfg, fusion_cfg("late"), modalities, META, 3).predict_with_heads == rule
    misspelt = OmegaConf.merge(cfg, {"modality_heads": False, "predict_with_heads": "average"})
    with pytest.raises(ValueError, match="model.predict_with_heads must be false, hybrid, mean or product"):
        build_model(misspelt, fusion_cfg("late"), modalities, META, 3)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # steps called without a Trainer
@pytest.mark.parametrize("vote_in_validation", [False, True])
def test_validation_scores_the_fused_head_and_the_test_the_vote(vote_in_validation):
    """With a vote set, both views are scored on the evaluation splits (<split>/acc_fused, <split>/acc_vote); the
    split's own metrics, the ones early stopping and the checkpoint follow, are the fused head's in validation
    (unless model.vote_in_validation) and the vote's in the test, as in serving."""
    modalities = ["image", "audio"]
    torch.manual_seed(0)
    cfg = OmegaConf.merge(model_cfg(), {"predict_with_heads": "hybrid"})
    net = build_model(cfg, fusion_cfg("late"), modalities, META, 3).eval()
    task = build_task(compose(["task=multiclass"]).task, SingleLabel.fit(["a", "b", "c"]))
    module = FusionModule(net, task, optimizer=torch.optim.AdamW, vote_in_validation=vote_in_validation)
    batch = make_batch(modalities, {"image": [True, False, True, True], "audio": [True, True, False, True]})
    with torch.no_grad():
        fused, _, voted = net.predictions(batch)
        batch["label"] = voted.argmax(dim=-1)  # the vote is always right, the fused head is not
        fused_acc = float((fused.argmax(dim=-1) == batch["label"]).float().mean())
        assert fused_acc < 1.0
        for split in ("val", "test"):
            module._step(batch, split)
            score = float(module.metrics[f"{split}_"].compute()[f"{split}/acc"])
            views = {
                v: float(module.view_metrics[f"{split}_{v}"].compute()[f"{split}/acc_{v}"]) for v in ("fused", "vote")
            }
            assert views == {"fused": pytest.approx(fused_acc), "vote": 1.0}
            assert score == (1.0 if split == "test" or vote_in_validation else pytest.approx(fused_acc))


def _lrs(total: int, **kwargs) -> list[float]:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = WarmupCosine(opt, total_steps=total, **kwargs)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor():
    lrs = _lrs(100, warmup_fraction=0.1, min_lr_ratio=0.1)
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))


def test_warmup_has_a_floor_in_steps_and_at_most_half_the_run():
    assert _lrs(100, warmup_fraction=0.0, min_warmup_steps=20)[19] == pytest.approx(1.0)
    assert _lrs(10, warmup_fraction=0.0, min_warmup_steps=20)[4] == pytest.approx(1.0)  # capped at 5 of 10


def test_warmup_cosine_needs_a_finite_horizon():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="max_epochs or trainer.max_steps"):
        WarmupCosine(opt, total_steps=float("inf"))
