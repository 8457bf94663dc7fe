"""One module per ``trilogy`` subcommand; each defines ``register(subparsers)``. Found automatically."""
