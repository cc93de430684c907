"""Free-text command-line values that Hydra's override grammar would reject or reinterpret.

Hydra parses ``key=value`` with a grammar in which an unquoted value may not hold CJK or most
non-ASCII characters (``text=我喜欢小狗`` stops with ``LexerNoViableAltException``), a comma
makes a sweep and ``${...}`` an interpolation. A sentence to translate is none of these, and a
shell strips the quotes a user types around it. So before Hydra sees ``sys.argv``, the value of
each free-text key is wrapped in single quotes with Hydra's escapes; a value the user already
quoted for Hydra is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser


def hydra_quote(value: str) -> str:
    """`value` as a single-quoted Hydra string that parses back to exactly `value`."""
    # backslashes escape only before a quote (or at the end, before the closing quote)
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    # OmegaConf reads "\${" as a literal "${" (and "\\${" as a backslash then an
    # interpolation), so backslashes before "${" are doubled and one more escapes it
    escaped = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", escaped)
    return "'" + escaped + "'"


def _already_quoted(value: str) -> bool:
    if len(value) < 2 or value[0] not in "'\"" or value[-1] != value[0]:
        return False
    try:
        OverridesParser.create().parse_overrides([f"k={value}"])
    except Exception:  # noqa: BLE001 - any parse failure means: not a quoted Hydra string
        return False
    return True


def quote_free_text(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """`argv` with every ``key=value`` (also ``+key=`` / ``++key=``) of `keys` quoted."""
    pattern = re.compile(rf"^(\+{{0,2}}(?:{'|'.join(map(re.escape, keys))}))=(.*)$", re.DOTALL)
    out = []
    for arg in argv:
        match = pattern.match(arg)
        if match and not _already_quoted(match.group(2)):
            arg = f"{match.group(1)}={hydra_quote(match.group(2))}"
        out.append(arg)
    return out
