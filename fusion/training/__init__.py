"""Lightning wiring: the module, callbacks, checkpoints and resume (the stages that run it: fusion.stages)."""
