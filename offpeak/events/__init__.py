"""Lifecycle events: the outbox written with each status change, signing secrets, the
SSRF guard of webhook targets, and delivery (Standard Webhooks)."""
