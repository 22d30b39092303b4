"""The catalog: served models (models.yaml) and GPU pools (pools.yaml), with packaged defaults."""
