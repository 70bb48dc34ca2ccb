"""Raw files to per-modality tensors; knows nothing of models, so its DVC stages stay cached."""
