"""hwloop: hardware-in-the-loop RTL generation, co-simulation and design-space search."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hwloop")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
