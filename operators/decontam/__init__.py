"""Benchmark decontamination: word normalisation and hashing (words, ngrams), the evaluation sets' n-gram index
(evals, index) and a shard's matches removed or cut (shard). No engine inside: the job is jobs/decontaminate."""
