"""The stage functions the entry points call: `train(cfg)` and `evaluate(cfg)`, and `publish_run`, which
hands a tested network to serving (bundle, MLflow model) and explain (figures). The one layer that sees
training, serving and explain together; nothing in the library imports it."""
