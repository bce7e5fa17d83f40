"""The MLflow model registry: which version a selector names (`resolver`, over `rest` or
`client`), and whether the registry is there (`health`)."""
