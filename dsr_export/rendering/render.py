"""Renders the package's pages and README with Jinja2 (autoescaping on) in the reader's
language.

Messages live in Babel catalogues (``messages/<language>.po``; English is the source text),
compiled in memory when first used, so the repository holds only text. Dates are shown in UTC
in the reader's locale, numbers and sizes likewise (Babel's CLDR data). Every link a page
carries points inside the package (relative, percent-encoded); a value from the export is only
ever text.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Final
from urllib.parse import quote

import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import NullTranslations, Translations
from babel.units import format_unit

from dsr_export.domain import archive
from dsr_export.domain.export_catalog import (
    catalog,
    explain_product,
    explain_request_info_field,
    reference,
)
from dsr_export.domain.organisation import PROCESSING_FIELDS, OrganisationProfile
from dsr_export.domain.package_manifest import (
    INDEX_MEMBER,
    PACKAGE_LANGUAGES,
    PAGES_DIR,
    REQUEST_INFO,
)
from dsr_export.rendering.json_html import More, json_html, visible_controls
from dsr_export.rendering.views import FileView

#: Languages with a catalogue (English is the source text).
LANGUAGES: Final = PACKAGE_LANGUAGES
DEFAULT_LANGUAGE: Final = "en"
_SIZE_UNITS: Final = (
    (1000**3, "digital-gigabyte"),
    (1000**2, "digital-megabyte"),
    (1000, "digital-kilobyte"),
)


def supported(language: str) -> bool:
    """True when the package can be rendered in ``language``."""
    return language in LANGUAGES


@functools.cache
def translations(language: str) -> NullTranslations:
    """The compiled catalogue of ``language`` (English: the source text itself)."""
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    source = resources.files("dsr_export.rendering").joinpath(f"messages/{language}.po")
    with source.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


@dataclass
class Facts:
    """The DSR's facts the first page shows (times are UTC; None shows a dash)."""

    request_id: str
    packaged_at: datetime
    received_at: datetime | None = None
    deadline: datetime | None = None
    completed_at: datetime | None = None
    regulation: str | None = None


@dataclass
class FileEntry:
    """One data file as the pages list it (no content: pages are rendered as files stream)."""

    blob_name: str
    member: str
    size: int
    sha256: str
    media_type: str
    product: str
    page: str | None = None

    @property
    def data_href(self) -> str:
        """From a page (``pages/``) to the raw file."""
        return "../" + quote(self.member, safe="/")

    @property
    def page_href(self) -> str:
        """From a product page to the file's page."""
        return quote(self.page.removeprefix(PAGES_DIR), safe="/") if self.page else ""


@dataclass
class ProductEntry:
    """One section (top folder) and its files."""

    name: str
    page: str
    explanation: str
    known: bool
    files: list[FileEntry] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes of its files."""
        return sum(item.size for item in self.files)

    @property
    def href_from_index(self) -> str:
        """From ``index.html`` to the product page."""
        return quote(self.page, safe="/")


class Renderer:
    """Pages in one language for one DSR."""

    def __init__(self, language: str, organisation: OrganisationProfile, facts: Facts) -> None:
        if not supported(language):
            raise ValueError(f"no catalogue for language {language!r}")
        self.language = language
        self.facts = facts
        try:
            self._locale = Locale.parse(language)
        except UnknownLocaleError:  # pragma: no cover - LANGUAGES are known to CLDR
            self._locale = Locale.parse(DEFAULT_LANGUAGE)
        self._env = self._environment()
        url, title = reference(language)
        org = organisation
        self._common: dict[str, Any] = {
            "language": language,
            "facts": facts,
            "reference_url": url,
            "reference_title": title,
            "organisation": {
                "name": org.text("organisation.name", language),
                "address": org.text("organisation.address", language),
                "contact": org.text("organisation.contact", language),
                "dpo_name": org.text("dpo.name", language),
                "dpo_contact": org.text("dpo.contact", language),
            },
            "processing": [
                (letter, self._processing_title(name), org.text(f"processing.{name}", language))
                for letter, name in PROCESSING_FIELDS
            ],
        }

    def _environment(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("dsr_export.rendering", "templates"),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
            extensions=["jinja2.ext.i18n"],
            undefined=jinja2.StrictUndefined,
            # Templates are compiled once: no check of their files per page (a stat each).
            auto_reload=False,
            trim_blocks=False,
            finalize=visible_controls,
        )
        env.install_gettext_translations(translations(self.language), newstyle=True)  # type: ignore[attr-defined]
        env.filters.update(
            when=self.when,
            size=self.size,
            number=self.number,
            flag=self._flag,
            problem=self._problem,
        )
        return env

    # -- formatting in the reader's locale -----------------------------------------------------
    def when(self, moment: datetime | None) -> str:
        """A time in UTC, in the reader's locale; a dash when unknown."""
        if moment is None:
            return "—"
        return (
            format_datetime(moment.astimezone(UTC), "medium", tzinfo=UTC, locale=self._locale)
            + " UTC"
        )

    def number(self, value: int) -> str:
        """A count in the reader's locale."""
        return format_decimal(value, locale=self._locale)

    def size(self, value: int) -> str:
        """Bytes in the reader's locale: ``1.5 MB`` / ``1,5 MB``."""
        for factor, unit in _SIZE_UNITS:
            if value >= factor:
                return format_unit(
                    value / factor, unit, length="short", format="#,##0.#", locale=self._locale
                )
        return f"{format_decimal(value, locale=self._locale)}\u00a0B"

    def _gettext(self, message: str) -> str:
        return translations(self.language).gettext(message)

    def _processing_title(self, name: str) -> str:
        titles = {
            "purposes": "Purposes of the processing",
            "categories": "Categories of personal data",
            "recipients": "Recipients",
            "retention": "How long the data is kept",
            "rights": "Your rights to rectification, erasure, restriction and objection",
            "complaint": "Your right to complain to a supervisory authority",
            "source": "Where the data comes from",
            "automatedDecisions": "Automated decisions, including profiling",
        }
        return self._gettext(titles[name])

    def _flag(self, code: str | None) -> str:
        texts = {
            archive.ENCRYPTED: "encrypted: listed, not opened",
            archive.UNSAFE_NAME: "unsafe name (would land outside its folder): listed, not opened",
            archive.RATIO: "compressed suspiciously well (possible zip bomb): not opened",
            archive.TOO_LARGE: "too large to open here",
            archive.TOO_DEEP: "nested too deep to open here",
            archive.TOO_MANY: "too many members to list them all",
            archive.NOT_A_ZIP: "not a readable zip archive",
        }
        return self._gettext(texts[code]) if code in texts else ""

    def _problem(self, code: str | None) -> str:
        texts = {
            "too-large": "This file is too large to show here; open the raw file.",
            "unreadable": "This file is not readable text; open the raw file.",
            "binary": (
                "This file is not text; open the raw file with a program that reads its type."
            ),
            "invalid-json": "This file is not valid JSON; it is shown as text.",
            "invalid-csv": "This file is not valid CSV; it is shown as text.",
        }
        return self._gettext(texts[code]) if code in texts else ""

    # -- pages ----------------------------------------------------------------------------------
    def _render(self, template: str, **values: Any) -> bytes:
        return self._env.get_template(template).render(**self._common, **values).encode("utf-8")

    def file_page(self, entry: FileEntry, view: FileView) -> bytes:
        """The page of one file."""
        file = {
            "blob_name": entry.blob_name,
            "member": entry.member,
            "size": entry.size,
            "sha256": entry.sha256,
            "media_type": entry.media_type,
            "product": entry.product,
            "product_href": quote(product_page_name(entry.product), safe="/"),
            "data_href": entry.data_href,
        }
        notes: list[tuple[str, str]] = []
        if entry.blob_name == REQUEST_INFO:
            for name in catalog()["requestInfoFields"]:
                explained = explain_request_info_field(name, self.language)
                if explained is not None:
                    notes.append((name, explained.text))
        tree = json_html(view.data, self._more) if view.mode == "json" else None
        return self._render("file.html", file=file, view=view, notes=notes, tree=tree)

    def _more(self, what: More, count: int) -> str:
        """The sentence under a table, object or list that says how much is not shown."""
        texts = {
            "rows": self._gettext("%(count)s more rows not shown"),
            "fields": self._gettext("%(count)s more fields not shown"),
            "items": self._gettext("%(count)s more items not shown"),
        }
        return texts[what] % {"count": self.number(count)}

    def product_page(self, product: ProductEntry) -> bytes:
        """The page of one section."""
        return self._render("product.html", product=product)

    def index(
        self,
        products: Sequence[ProductEntry],
        parts: Sequence[str],
        withheld_codes: Iterable[str] = (),
        withheld_count: int = 0,
    ) -> bytes:
        """``index.html``: the first layer."""
        codes = sorted(set(withheld_codes))
        return self._render(
            INDEX_MEMBER,
            products=products,
            parts=list(parts),
            withheld=[None] * withheld_count,
            withheld_codes=codes,
            totals=self._totals(products),
            chart=self.chart(products),
        )

    def readme(
        self,
        products: Sequence[ProductEntry],
        parts: Sequence[str],
        withheld_codes: Iterable[str] = (),
        withheld_count: int = 0,
    ) -> bytes:
        """``README.txt``."""
        return self._render(
            "README.txt",
            parts=list(parts),
            withheld=[None] * withheld_count,
            withheld_codes=sorted(set(withheld_codes)),
            totals=self._totals(products),
        )

    @staticmethod
    def _totals(products: Sequence[ProductEntry]) -> dict[str, int]:
        return {
            "files": sum(len(p.files) for p in products),
            "bytes": sum(p.total_bytes for p in products),
        }

    def chart(self, products: Sequence[ProductEntry]) -> str:
        """A small inline SVG bar chart of bytes by section (rendered through the autoescaping
        environment: product names are text)."""
        shown = sorted(products, key=lambda p: p.total_bytes, reverse=True)[:12]
        largest = max((p.total_bytes for p in shown), default=0) or 1
        bars = [
            {
                "label": p.name,
                "width": round(300 * p.total_bytes / largest, 1),
                "size": self.size(p.total_bytes),
                "y": 4 + 22 * index,
            }
            for index, p in enumerate(shown)
        ]
        template = self._env.from_string(_CHART)
        return template.render(
            bars=bars, height=8 + 22 * len(bars), title=self._gettext("Data by section")
        )


def product_page_name(product: str) -> str:
    """The product page's file name, relative to ``pages/``."""
    from dsr_export.domain.package_manifest import product_page

    return product_page(product).removeprefix(PAGES_DIR)


def product_entry(name: str, language: str) -> ProductEntry:
    """A section with its explanation from the catalog."""
    from dsr_export.domain.package_manifest import product_page

    explanation = explain_product(name, language)
    return ProductEntry(name, product_page(name), explanation.text, explanation.known)


_CHART: Final = (
    '<figure class="chart"><svg xmlns="http://www.w3.org/2000/svg" role="img" width="560"'
    ' height="{{ height }}" viewBox="0 0 560 {{ height }}" aria-label="{{ title }}">'
    "<title>{{ title }}</title>"
    "{%- for bar in bars %}"
    '<text x="0" y="{{ bar.y + 14 }}" font-size="12">{{ bar.label|truncate(22, True, "…") }}</text>'
    '<rect x="160" y="{{ bar.y }}" width="{{ bar.width }}" height="16" fill="#3b6ea5"></rect>'
    '<text x="{{ 166 + bar.width }}" y="{{ bar.y + 14 }}" font-size="12">{{ bar.size }}</text>'
    "{% endfor -%}"
    '</svg><figcaption class="muted">{{ title }}</figcaption></figure>'
)
