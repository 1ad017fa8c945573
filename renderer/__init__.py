"""Rendering: cameras, transfer functions, the vispy view, the torch ray-marcher, offline rendering."""
