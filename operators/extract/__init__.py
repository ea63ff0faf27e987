"""extract operators."""
