"""Data only: colormaps, shipped metric weights, icons, the desktop launcher."""
