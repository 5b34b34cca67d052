"""overton: build a French political text corpus and train a language model on it."""

__version__ = "0.1.0"
