"""What the Content-Security-Policy would refuse in a page: inline code without the
response's nonce, inline event handlers and style attributes, files from elsewhere."""

import re
from html.parser import HTMLParser

_NONCE = re.compile(r"'nonce-([^']+)'")
_EXTERNAL = re.compile(r"^(https?:)?//", re.IGNORECASE)


class _Scan(HTMLParser):
    def __init__(self, nonce: str | None) -> None:
        super().__init__()
        self.nonce = nonce
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...> inline event handler")
            if name == "style":
                self.problems.append(f"<{tag} style={value!r}> inline style attribute")
            if name in {"href", "src", "action"} and (value or "").lower().startswith(
                "javascript:"
            ):
                self.problems.append(f"<{tag} {name}=javascript:...>")
        if tag == "script":
            src = values.get("src")
            if src is None and values.get("nonce") != self.nonce:
                self.problems.append("inline <script> without the response's nonce")
            if src and _EXTERNAL.match(src):
                self.problems.append(f"<script src={src!r}> from another origin")
        if tag == "style" and values.get("nonce") != self.nonce:
            self.problems.append("<style> without the response's nonce")
        if tag == "link" and _EXTERNAL.match(values.get("href") or ""):
            self.problems.append(f"<link href={values['href']!r}> from another origin")


def csp_problems(response) -> list[str]:
    """Empty for an HTML response the browser runs whole under its CSP header."""
    policy = response.get("Content-Security-Policy", "")
    if not policy:
        return ["no Content-Security-Policy header"]
    found = _NONCE.search(policy)
    scan = _Scan(found.group(1) if found else None)
    scan.feed(response.content.decode())
    return scan.problems
