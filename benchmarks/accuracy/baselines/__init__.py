"""Classic fusion baselines that read the raw dataset folder: logistic regression and a LeNet late fusion."""
