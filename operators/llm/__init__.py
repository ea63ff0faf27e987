"""LLM stages: prompt families, chunking, output parsing and validation, engine adapters."""
