"""Publish: API objects of requests and batches, JSONL and Parquet results, OpenAI files."""
