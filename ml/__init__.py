"""ML confidence: features, labels, training, model registry and batch scoring (flag ml.enabled)."""
