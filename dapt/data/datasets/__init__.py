"""One module per dataset; each registers its classes in ``DATASET_REGISTRY`` on import
(``build_dataset`` imports every module here)."""
