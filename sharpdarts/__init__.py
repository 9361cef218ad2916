"""sharpdarts: sharpDARTS and DARTS as a configuration-driven experiment registry."""

__version__ = "0.1.0"
