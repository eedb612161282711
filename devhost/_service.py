"""The with-block shape every part of the offline host shares."""

from __future__ import annotations

from typing import Self


class Service:
    """Started on entering a ``with`` block and stopped on leaving it, whatever happened."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
