"""Throughput, API-economy, latency and memory benchmark of sfsync against real Redis, workers and the emulator."""
