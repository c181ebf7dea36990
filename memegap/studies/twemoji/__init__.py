"""The Twemoji study (the default experiment): error analysis of image→text retrieval."""
