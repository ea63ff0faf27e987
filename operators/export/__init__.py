"""Tokenized training shards: copy keys (seeded shuffle, weights, repeats, curriculum phases), the shard plan,
and writers for Megatron-LM's indexed dataset (``.bin``/``.idx``) and datatrove's ``.ds`` files."""
