"""Lightning training: the module, loss, schedules, checkpoint averaging."""
