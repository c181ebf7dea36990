"""The modality-gap study (thesis 002): Power Spherical simulation and explorer, loss-setting tables, the shift sweep, the cone effect, pictogram search."""
