"""The organisation's own words for the package's first page: who it is, its data protection
officer, and the processing information GDPR Art. 15(1)(a)-(h) owes the person.

Never hard-coded: each deployment fills in its own profile (``ORGANISATION_PROFILE``, a JSON
file or the JSON itself; a filled-in sample in docs/organisation.sample.json). It is checked
when the settings are read, and a profile with a field missing is refused naming the field, so
no package ever goes out with a blank where the law wants an answer.

A text is a string, or an object of language codes to strings (``{"en": ..., "de": ...}``);
the package shows the reader's language, else English, else the first given.

Pure: the caller reads the JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Art. 15(1) letter -> the profile field that answers it, in the order the law lists them.
PROCESSING_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("a", "purposes"),
    ("b", "categories"),
    ("c", "recipients"),
    ("d", "retention"),
    ("e", "rights"),
    ("f", "complaint"),
    ("g", "source"),
    ("h", "automatedDecisions"),
)
_REQUIRED: Final[tuple[str, ...]] = (
    "organisation.name",
    "organisation.address",
    "organisation.contact",
    "dpo.name",
    "dpo.contact",
    *(f"processing.{name}" for _, name in PROCESSING_FIELDS),
)

Text = str | Mapping[str, str]


class ProfileInvalid(ValueError):
    """The profile misses a field or holds one of the wrong type; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def _text(path: str, value: object) -> Text:
    if isinstance(value, str) and value.strip():
        return value
    if (
        isinstance(value, Mapping)
        and value
        and all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in value.items())
    ):
        return dict(value)
    if value is None or value == "" or value == {}:
        raise ProfileInvalid(path, "is required")
    raise ProfileInvalid(path, "must be text, or an object of language codes to text")


def localized(text: Text, language: str) -> str:
    """``text`` in ``language``, else English, else the first language given."""
    if isinstance(text, str):
        return text
    return text.get(language) or text.get("en") or next(iter(text.values()))


@dataclass(frozen=True)
class OrganisationProfile:
    """A validated profile: every field the first page shows."""

    fields: Mapping[str, Text]

    def text(self, path: str, language: str) -> str:
        """One field (``organisation.name``, ``processing.purposes``...) in ``language``."""
        return localized(self.fields[path], language)

    @classmethod
    def parse(cls, raw: object) -> OrganisationProfile:
        """Check a profile document; :class:`ProfileInvalid` names the first field at fault."""
        if not isinstance(raw, Mapping):
            raise ProfileInvalid("(document)", "must be a JSON object")
        found: dict[str, Text] = {}
        for path in _REQUIRED:
            section, _, name = path.partition(".")
            block: Any = raw.get(section)
            if not isinstance(block, Mapping):
                raise ProfileInvalid(section, "is required (an object)")
            found[path] = _text(path, block.get(name))
        return cls(found)
