"""deployments of fragalysis-cd."""
