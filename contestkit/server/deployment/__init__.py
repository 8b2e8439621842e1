"""Setting the server up: the data directory, Kubernetes manifests and the supervised registry."""
