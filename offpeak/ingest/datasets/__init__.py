"""Datasets (Parquet, CSV, JSONL files) submitted as one batch of requests."""

from offpeak.ingest.datasets.ingest import Ingested, ingest_dataset
from offpeak.ingest.datasets.sources import DatasetFile, S3Access, check_source, format_of

__all__ = ["DatasetFile", "Ingested", "S3Access", "check_source", "format_of", "ingest_dataset"]
