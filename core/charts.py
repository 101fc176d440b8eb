"""The house style for server-side SVG charts (pygal): the site's fonts and
colours, and no script tags — pygal's default loads tooltips from a CDN,
which an exchange running on a closed network cannot reach.

Charts are inlined into pages under the Content-Security-Policy: the SVG keeps
only its <style> element (the page gives it the request's nonce, see the
`inline_svg` filter), never a script or a style attribute.
"""

import pygal
from pygal.style import Style

HOUSE_STYLE = Style(
    font_family='-apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", Roboto, sans-serif',
    background="transparent",
    plot_background="transparent",
    foreground="#5d6d7e",
    foreground_strong="#17202a",
    foreground_subtle="#e3e8ee",
    colors=("#0b7a5a", "#c0392b", "#1f5fa8", "#b7791f", "#6c3483", "#117a8b"),
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    title_font_size=14,
    stroke_width=2,
)


def _without_script_or_tooltip(root):
    """Drop pygal's config <script> (its tooltip JavaScript is never loaded here) and
    the tooltip overlay it would drive (the SVG's one inline style attribute)."""
    for parent in list(root.iter()):
        for child in list(parent):
            tag = child.tag.rsplit("}", 1)[-1] if isinstance(child.tag, str) else ""
            if tag == "script" or "tooltip-overlay" in (child.get("class") or "").split():
                parent.remove(child)
    return root


def line_chart(**config) -> pygal.Line:
    """A pygal line chart in the house style; `config` overrides the defaults."""
    defaults = {
        "style": HOUSE_STYLE,
        "height": 280,
        "show_dots": False,
        "show_minor_x_labels": False,
        "legend_at_bottom": True,
        "disable_xml_declaration": True,
        "js": [],
        "value_formatter": lambda value: f"{value:,.1f}",
    }
    chart = pygal.Line(**{**defaults, **config})
    chart.add_xml_filter(_without_script_or_tooltip)
    return chart


def bar_chart(**config) -> pygal.HorizontalBar:
    """A pygal horizontal bar chart in the house style (no script either)."""
    defaults = {"style": HOUSE_STYLE, "height": 280, "disable_xml_declaration": True, "js": []}
    chart = pygal.HorizontalBar(**{**defaults, **config})
    chart.add_xml_filter(_without_script_or_tooltip)
    return chart


def column_chart(**config) -> pygal.Bar:
    """A pygal vertical bar chart in the house style (e.g. an amount per day)."""
    defaults = {"style": HOUSE_STYLE, "height": 280, "disable_xml_declaration": True, "js": []}
    chart = pygal.Bar(**{**defaults, **config})
    chart.add_xml_filter(_without_script_or_tooltip)
    return chart
