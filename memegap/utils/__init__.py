"""Small helpers with no knowledge of data or models: atomic files, tables with relative paths, run dirs
and run set-up for the entry points, the console, and the offline W&B reader."""
