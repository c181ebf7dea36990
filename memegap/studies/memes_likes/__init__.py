"""The memes-likes study (thesis 000): the grid table of finished runs."""
