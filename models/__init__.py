"""Scene-representation networks: fit a neural field to a volume, save/load, query, bake."""
