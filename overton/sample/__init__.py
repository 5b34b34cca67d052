"""Bundled sample corpus for ``overton demo``: original text written for overton (CC0-1.0), see README.md."""
