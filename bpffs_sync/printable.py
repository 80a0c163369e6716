"""Names are data: how a cgroup name (any bytes but `/` and NUL) is shown as text and as JSON.

Cgroup names are chosen by whoever may mkdir in a (delegated) cgroup, so a name can hold terminal
control sequences ("\\x1b[2J" clears the screen) or bytes that are not UTF-8 (kept in a str as
surrogate escapes, os.fsdecode). Two rules, used at every place a name leaves the program:

- **Text** (`escape`, `escape_lines`; the CLI's text output, error lines and console logs): every
  character that is not printable -- C0 controls, DEL, C1 controls, and any other non-printable
  code point such as bidi overrides -- and the backslash itself are escaped, so the text is one
  unambiguous line per name that a terminal shows but never obeys:
      backslash      -> \\\\
      a byte that is not UTF-8 (a surrogate escape)    -> \\xNN  (the raw byte)
      a C0 control or DEL (U+0000..U+001F, U+007F)      -> \\xNN  (the same byte in UTF-8)
      any other non-printable code point               -> \\uNNNN or \\UNNNNNNNN
  C1 controls (U+0080..U+009F) are \\u0080..\\u009f, never \\x80..\\x9f: \\xNN above 0x7f always
  means a raw byte that is not UTF-8, so the escaped form decodes back to exactly one byte string.
- **JSON** (`json_safe`; every `--json` document and JSON log line): a string that is valid UTF-8
  goes out unchanged (JSON escapes control characters itself, losslessly). A string holding bytes
  that are not UTF-8 cannot be a JSON string (lone surrogates such as "\\udcff" are not valid
  UTF-8 and strict parsers refuse them), so its field carries the escaped text form above, for
  people, and a sibling field `<field>_b64` carries the exact bytes, base64: consumers that need
  the name byte for byte read `<field>_b64` when it is there, else `<field>`. (Chosen over always
  base64 so that the common case -- every name valid UTF-8 -- stays readable and unchanged.)
"""

from __future__ import annotations

import base64
import os
from typing import Any

_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for the bytes 0x80..0xff


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code in _SURROGATE_ESCAPES:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` with every non-printable character and the backslash escaped (see the module doc)."""
    if text.isprintable() and "\\" not in text:  # the common case: nothing to do
        return text
    return "".join(ch if ch.isprintable() and ch != "\\" else "\\\\" if ch == "\\" else _escape_char(ch)
                   for ch in text)


def escape_lines(text: str) -> str:
    """escape() of each line of a multi-line text; the line breaks stay."""
    return "\n".join(escape(line) for line in text.split("\n"))


def has_raw_bytes(text: str) -> bool:
    """Does `text` hold bytes that are not UTF-8 (surrogate escapes)?"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def raw_b64(text: str) -> str:
    """The exact bytes of a name held as a str (os.fsencode), base64."""
    return base64.b64encode(os.fsencode(text)).decode("ascii")


def json_safe(doc: Any) -> Any:
    """`doc` with every string that holds non-UTF-8 bytes replaced by its escaped form, and, for a
    dict value, a sibling `<key>_b64` with the exact bytes. Strings that are valid UTF-8 are
    unchanged. A new structure; `doc` is not modified."""
    if isinstance(doc, str):
        return escape(doc) if has_raw_bytes(doc) else doc
    if isinstance(doc, dict):
        out: dict[Any, Any] = {}
        for key, value in doc.items():
            safe_key = json_safe(key) if isinstance(key, str) else key
            if isinstance(value, str) and has_raw_bytes(value):
                out[safe_key] = escape(value)
                out[f"{safe_key}_b64"] = raw_b64(value)
            else:
                out[safe_key] = json_safe(value)
        return out
    if isinstance(doc, list):
        return [json_safe(v) for v in doc]
    if isinstance(doc, tuple):  # kept a tuple (structlog's exc_info is one)
        return tuple(json_safe(v) for v in doc)
    return doc
