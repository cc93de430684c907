"""Lightning training: the module, loss, schedules, checkpointing, metrics."""
