"""Collectors: everything that brings documents into ``raw/`` (file ingest now, crawlers later)."""
