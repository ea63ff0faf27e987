"""cc-refinery operators: engine-free functions and classes over pyarrow tables."""
