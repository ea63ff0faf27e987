"""The cluster configs: templates, values and their renderer (``python -m clusters.render``)."""
