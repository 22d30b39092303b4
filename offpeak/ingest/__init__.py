"""Ingest: a request comes in, is admitted, registered in the state database and sealed
into Parquet segments (single requests, OpenAI input files, datasets)."""
