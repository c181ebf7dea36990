"""Acquisition: X/Twitter (tweepy), HTTP downloads (requests), the ARASAAC API. Raw files + manifests."""
