"""Plain Python clients for AWX, GitHub, the OCI registry and the Kubernetes roll-out. Never imports prefect."""
