"""The subject's package as a person reads it: HTML pages and a README rendered with Jinja2
(autoescaping on: every name and value from the export is data, never markup) in the reader's
language (Babel message catalogues, dates and sizes in the reader's locale)."""
