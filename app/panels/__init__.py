"""Dock panels and view widgets of the main window."""
