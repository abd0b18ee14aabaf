"""The notification email's HTML part: the agent's Markdown rendered, the service's own words
escaped, links to the dashboard and to unsubscribe.

Nothing a model or an API caller wrote reaches the HTML unescaped: markdown-it's `html` option
is off (raw HTML in the answer is shown as text), links are kept only for http, https and mailto
(markdown-it's default refuses only javascript:, vbscript:, file: and most data: URLs), and
images are not rendered (a remote image tells its server who opened the email, and when).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

from app.notify.content import Content

# Schemes a link in the answer may have; anything else (relative links too: an email has no
# base address) is shown as text.
_LINK = re.compile(r"(?:https?|mailto):", re.IGNORECASE)

# Minimal inline styles: many mail clients drop <style> blocks, none load remote CSS.
_BODY = (
    "margin:0;padding:16px;font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "font-size:15px;line-height:1.5;color:#1f2328;background:#ffffff"
)
_QUOTE = (
    "margin:0 0 1em;padding:0 0 0 12px;border-left:3px solid #d0d7de;color:#424a53;"
    "white-space:pre-wrap"
)
_SMALL = "font-size:13px;color:#59636e"


class _Markdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802 (markdown-it's name)
        return _LINK.match(url) is not None


_MARKDOWN = _Markdown("commonmark", {"html": False}).disable("image")


@dataclass(frozen=True, slots=True)
class MessageLinks:
    """Addresses on the service a notification points to (with PUBLIC_URL set)."""

    dashboard: str | None = None  # the workflow's page on the dashboard
    unsubscribe: str | None = None  # the signed one-click link of this subscription


def render_markdown(text: str) -> str:
    """`text` (CommonMark) as HTML: raw HTML escaped, only http, https and mailto links."""
    rendered: str = _MARKDOWN.render(text)
    return rendered


def html_part(content: Content, links: MessageLinks) -> str:
    """The whole HTML document of a notification."""
    main: list[str] = []
    if content.heading is None:
        main.append(render_markdown(content.answer or ""))
    else:
        main += [_paragraph(block) for block in content.heading.split("\n\n")]
    if content.supplied is not None:
        supplied = "\n".join(content.supplied.splitlines())
        main.append(f'<blockquote style="{_QUOTE}">{_escape(supplied)}</blockquote>')
        main.append(_paragraph(content.supplied_note, style=_SMALL))
    if content.action is not None:
        label, url = content.action
        main.append(f"<p><strong>{_link(url, label)}</strong></p>")
    footer = [_escape(content.footer)] if content.footer is not None else []
    if links.dashboard is not None:
        footer.append(_link(links.dashboard, "See this task on the dashboard"))
    if links.unsubscribe is not None:
        footer.append(_link(links.unsubscribe, "Unsubscribe from this notification"))
    if footer:
        main.append('<hr style="border:0;border-top:1px solid #d0d7de;margin:24px 0 8px">')
        main.append(f'<p style="{_SMALL}">' + "<br>\n".join(footer) + "</p>")
    return (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_escape(content.subject)}</title></head>\n"
        f'<body style="{_BODY}"><div style="max-width:640px;margin:0 auto">\n'
        + "\n".join(main)
        + "\n</div></body></html>\n"
    )


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _paragraph(text: str, *, style: str | None = None) -> str:
    """One paragraph of the service's own words: their line breaks wrap plain text, and HTML
    wraps by itself."""
    attributes = f' style="{style}"' if style else ""
    return f"<p{attributes}>{_escape(' '.join(text.split()))}</p>"


def _link(url: str, text: str) -> str:
    return f'<a href="{_escape(url)}">{_escape(text)}</a>'
