"""Where things are in the checkout, for tests that read its files or run its commands."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: README, docs/, docker-compose.yml, the packages."""
