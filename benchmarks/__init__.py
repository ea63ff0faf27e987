"""Throughput benchmarks for cc-refinery and its peers."""
