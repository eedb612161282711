"""``dsrctl``: the operator's command line for dsr-export, a thin client of its HTTP API.

It works the same against the offline host (``make serve``) and the app in Azure: it speaks only
HTTP (and, to fetch a finished export, Blob storage through the short-lived link the API hands
out). Of the app it imports nothing but the pure domain (``dsr_export.domain``: the evidence
verifier, redaction); ``make lint`` (import-linter) holds it to that. See docs/dsrctl.md.
"""

from importlib import metadata
from typing import Final


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, the one place it is written)."""
    try:
        return metadata.version("dsr-export")
    except metadata.PackageNotFoundError:  # run from a tree never installed (pip install -e .)
        return "0+unknown"


__version__: Final = _version()
