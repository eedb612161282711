"""``python -m dsrctl`` and the ``dsrctl`` console script."""

from __future__ import annotations

from dsrctl.commands import main

if __name__ == "__main__":
    main()
