"""Nearest-neighbour search (faiss, with an exact torch fallback)."""
