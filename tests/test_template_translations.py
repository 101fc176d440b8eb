"""Every text a template shows has its Chinese in the catalogue: a string added
to a template without running makemessages (or left with an empty msgstr)
fails here, naming the template and the string."""

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils.translation import trans_real
from django.utils.translation.template import templatize

TEMPLATES = Path(settings.BASE_DIR) / "templates"
CALL = re.compile(
    r"\b(?P<fn>npgettext|pgettext|ngettext|gettext)\("
    r"(?P<args>(?:\s*u?(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*,?)+)"
)


def _messages(path: Path) -> list[str]:
    """The catalogue keys a template asks for (as gettext stores them)."""
    keys = []
    for call in CALL.finditer(templatize(path.read_text(), origin=str(path))):
        strings = ast.literal_eval(f"({call['args'].rstrip().rstrip(',')},)")
        match call["fn"]:
            case "gettext":
                keys.append(strings[0])
            case "pgettext":
                keys.append(f"{strings[0]}\x04{strings[1]}")
            case "ngettext":
                keys.append((strings[0], 0))
            case "npgettext":
                keys.append((f"{strings[0]}\x04{strings[1]}", 0))
    return keys


def _templates() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_every_template_string_has_its_chinese(path):
    catalogue = trans_real.translation("zh-hans")._catalog
    missing = [key for key in _messages(path) if not catalogue.get(key)]
    assert missing == [], f"{path.name}: not in the Chinese catalogue (makemessages): {missing}"


def test_the_check_finds_a_string_nobody_translated(tmp_path):
    template = tmp_path / "new.html"
    template.write_text('{% load i18n %}<p>{% trans "A sentence no translator has seen" %}</p>')

    assert _messages(template) == ["A sentence no translator has seen"]
    assert not trans_real.translation("zh-hans")._catalog.get(_messages(template)[0])
