"""ML confidence: features, labels, training, model registry and batch scoring (phase 3, flag ml.enabled)."""
