"""Sphinx extension local to this book (loaded through ``_config.yml``).

- It puts the repository root first on ``sys.path`` so that ``sphinx.ext.autodoc``
  imports the ``cifar_tutorial`` package from this checkout, whether or not the
  package is installed in the environment that builds the book.
- It registers the pybtex style ``authoryear``: the bibliography is sorted by author,
  like ``plain``, but its entries are labelled "Kingma and Ba 2015" instead of "[7]",
  to match the author-year citations in the text.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

ROOT = Path(__file__).resolve().parent.parent


def _surname(person) -> str:
    parts = person.prelast_names + person.last_names
    text = " ".join(parts) if parts else str(person)
    return text.replace("{", "").replace("}", "")


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels such as "Krizhevsky 2009", "Kingma and Ba 2015", "He et al. 2016"."""

    def format_labels(self, sorted_entries):
        seen: dict[str, int] = {}
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            people = [p for p in people if str(p) != "others"]
            if not people:
                names = entry.fields.get("title", entry.key)
            elif len(people) == 1:
                names = _surname(people[0])
            elif len(people) == 2:
                names = f"{_surname(people[0])} and {_surname(people[1])}"
            else:
                names = f"{_surname(people[0])} et al."
            label = f"{names} {entry.fields.get('year', 'n.d.')}"
            # Disambiguate equal labels: "Smith 2017a", "Smith 2017b".
            count = seen.get(label, 0)
            seen[label] = count + 1
            yield label if count == 0 else f"{label}{chr(ord('a') + count)}"


class AuthorYearStyle(PlainStyle):
    default_label_style = "authoryear"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app):
    root = str(ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
