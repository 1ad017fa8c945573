"""volsight application: the CLI and the PySide6 window (the only room that owns windows and threads)."""
