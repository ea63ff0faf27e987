"""Job entry points: ``python -m jobs.<name> --config <recipe.yaml>``."""
