"""A local Kubernetes control plane with process-backed fake nodes, for tests and the demo."""
