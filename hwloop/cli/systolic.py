"""CLI commands of this area (see hwloop.cli for the registration protocol)."""
