"""blocks of fragalysis-cd."""
