"""What a tiny training run logged, read back from its MLflow store: per-epoch histories, and the check that the
run learned (the training loss fell and the training accuracy rose between the first and the last epoch)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from fusion.tracking.store import absolute_tracking_uri

MIN_LOSS_DROP = 0.05  # the last epoch's training loss is at least 5 % below the first's


def epoch_history(cfg, key: str) -> list[float]:
    """The values of `key` in step order, for the single run of cfg's experiment."""
    client = MlflowClient(tracking_uri=absolute_tracking_uri(cfg.logger.tracking_uri))
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment_name).experiment_id])
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


def assert_learned(cfg) -> None:
    """Fails when the optimiser did not move the model towards the labels (e.g. a zero learning rate, detached
    loss or shuffled labels): the seeded, deterministic CPU run's training loss must fall and its accuracy rise."""
    loss, acc = epoch_history(cfg, "train/loss"), epoch_history(cfg, "train/acc")
    assert len(loss) >= 2 and len(acc) == len(loss), (loss, acc)
    assert loss[-1] < (1 - MIN_LOSS_DROP) * loss[0], f"train/loss per epoch {loss}: it did not fall"
    assert acc[-1] > acc[0], f"train/acc per epoch {acc}: it did not rise"
