"""Run: an inference job opened from pending requests, run chunk by chunk, footprint recorded."""
