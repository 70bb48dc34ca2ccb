"""The config tree: params.yaml matches conf/, every option composes, MLflow-safe names."""

import math
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fusion.config import compose
from fusion.overrides import quoted_override
from fusion.training.step_floor import automatic_ceiling

ROOT = Path(__file__).resolve().parents[1]
MODALITY_OPTIONS = sorted(p.stem for p in (ROOT / "conf" / "modality").glob("*.yaml"))


def test_params_yaml_is_the_composed_config():
    """DVC stages read params.yaml; it must equal conf/ composed (regenerate with `make params`)."""
    committed = OmegaConf.load(ROOT / "params.yaml")
    assert OmegaConf.to_container(committed) == OmegaConf.to_container(compose()), "run `make params`"


def test_all_seven_modality_subsets_exist():
    assert len(MODALITY_OPTIONS) == 7


@pytest.mark.parametrize("option", MODALITY_OPTIONS)
def test_modality_options(option):
    cfg = compose([f"modality={option}"])
    assert cfg.modality.name == option
    assert "+".join(cfg.modality.names) == option
    assert "+" not in cfg.modality.slug and cfg.modality.slug == option.replace("+", "_")


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "ddp_cpu", "fsdp"])
def test_trainer_options_compose(trainer):
    cfg = compose([f"trainer={trainer}"])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_cpu_trainer_instantiates_with_the_automatic_ceiling(tmp_path):
    cfg = compose(["trainer=cpu", f"paths.output_dir={tmp_path}"])
    trainer = instantiate(cfg.trainer, logger=False, **automatic_ceiling(cfg))
    assert cfg.trainer.max_epochs is None and trainer.max_epochs == cfg.callbacks.step_floor.epochs


def test_optimizer_is_partial():
    import torch

    cfg = compose()
    optimizer = instantiate(cfg.optim.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.AdamW)


@pytest.mark.parametrize("path", ["/tmp/runs/0,2", "/tmp/a=b c/[x]{y}", "/tmp/it's", "/tmp/back\\slash", "/tmp/end\\"])
def test_a_quoted_override_reaches_the_config_as_one_value(path):
    """Folders named with Hydra's special characters (a comma made a run folder read as a sweep) stay one path."""
    assert compose([quoted_override("data.root", path)]).data.root == path


def test_stage_overrides_refuse_unknown_keys_and_groups_naming_the_fix(tmp_path):
    """A DVC stage reads params.yaml plus key=value overrides: a mistyped key and a config group used to become new,
    unread keys (the stage then ran with its old value); they are refused with the fix, and `+key=value` adds a key."""
    from fusion.config import load_params

    params = tmp_path / "params.yaml"
    params.write_text(OmegaConf.to_yaml(compose()), encoding="utf-8")
    cfg = load_params(params, ["preprocess.text.max_len=64", "model.text.lora.r=8", "+trainer.limit_train_batches=3"])
    assert cfg.preprocess.text.max_len == 64 and cfg.model.text.lora.r == 8 and cfg.trainer.limit_train_batches == 3
    cfg.anything = 1  # the loaded config stays open, as before
    with pytest.raises(SystemExit, match=r"preprocess.text.max_lne is not a parameter in .*\+preprocess.text.max_lne="):
        load_params(params, ["preprocess.text.max_lne=64"])
    with pytest.raises(SystemExit, match=r"chooses a config group.*python -m fusion.config model/text=pretrained"):
        load_params(params, ["model/text=pretrained"])
    with pytest.raises(SystemExit, match="must look like key=value"):
        load_params(params, ["data.root"])


@pytest.mark.parametrize("study", sorted(p.stem for p in (ROOT / "conf" / "hparams_search").glob("*.yaml")))
def test_search_spaces_name_real_options(study):
    """Every value a committed search space can draw composes into a valid config (a misspelt key or choice would
    otherwise fail only in a trial, hours into a search): each choice, and the two ends of each range and interval."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    params = OmegaConf.load(ROOT / "conf" / "hparams_search" / f"{study}.yaml").hydra.sweeper.params
    parser = OverridesParser.create()
    drawable = {}
    for key, space in params.items():
        sweep = parser.parse_override(f"{key}={space}").value()
        if isinstance(sweep, ChoiceSweep):
            drawable[key] = sweep.list
        elif isinstance(sweep, RangeSweep):
            last = sweep.start + (math.ceil((sweep.stop - sweep.start) / sweep.step) - 1) * sweep.step
            drawable[key] = [sweep.start, last]
        else:
            assert isinstance(sweep, IntervalSweep), f"{study}: {key}={space} is not a choice, range or interval"
            drawable[key] = [sweep.start, sweep.end]
    for i in range(max(len(values) for values in drawable.values())):  # every value at least once, few composes
        drawn = {key: values[i % len(values)] for key, values in drawable.items()}
        cfg = compose([f"{key}={value}" for key, value in drawn.items()])
        for key, value in drawn.items():
            if key not in ("fusion", "modality") and "/" not in key:  # a group's option: its file was found
                assert OmegaConf.select(cfg, key) == value, f"{study}: {key}={value} did not reach the config"
