"""flows of fragalysis-cd."""
