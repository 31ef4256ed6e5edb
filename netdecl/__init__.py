"""netdecl: a declarative reconciler for Linux host networking."""

__version__ = "0.1.0"
