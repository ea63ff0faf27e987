"""io operators."""
