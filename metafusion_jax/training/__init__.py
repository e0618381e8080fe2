"""Run infrastructure shared by the training loops: logs, checkpoints, result files."""
