"""One module per CLI subcommand, imported only when that subcommand runs.

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""
