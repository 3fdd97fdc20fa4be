"""`blade bench`: throughput and memory of every pipeline stage against the raw ceiling."""
