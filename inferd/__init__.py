"""inferd: serve scikit-learn and MLflow models on bare VMs with atomic hot reload."""

__version__ = "0.1.0"
