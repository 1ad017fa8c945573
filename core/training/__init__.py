"""Training and evaluating volsight's own learned 3D metric: simulated data, trainer, evaluation."""
