"""Lightning wiring: the module, the train and evaluate procedures."""
