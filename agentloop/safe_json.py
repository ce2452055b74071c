"""JSON from outside the server, parsed with a depth limit: the one parser of every request body.

Python's json module recurses once per level of nesting: a body nested about
1,000 levels deep raises RecursionError inside the parser, and one a little
shallower parses but makes whatever walks it next (pydantic, protobuf's JSON
parser, redaction, json.dumps on the way to the database) recurse past the
interpreter's limit. Either way the caller got a 500. Every request body is
parsed here instead: the nesting is measured before parsing, so a body deeper
than MAX_DEPTH is refused with a message, and everything after the parse may
walk the result recursively.

MAX_DEPTH leaves room for real payloads: an OTLP JSON export of spans whose
attributes nest key-value lists a dozen levels deep is about 60 levels, a
model's tool input rarely more than 20.

Used by the plain ASGI apps (ingest, runner events, gateway), the runner API
views and the REST API's parser (agentloop/api/parsers.py).
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

MAX_DEPTH = 100

# What the depth count keeps of a text: quotes and brackets; then each bracket
# counts +1 or -1 (as a signed byte).
_KEEP = b'"[]{}'
_DROP = bytes(b for b in range(256) if b not in _KEEP)
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_STRING = re.compile(rb'"[^"]*"')


class JsonError(ValueError):
    """The body is not JSON this server accepts; str() is the message for the caller."""


def nesting_depth(body: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (0 for a scalar).

    Brackets inside strings are not nesting, so strings are dropped first:
    escaped backslashes and quotes go, then everything but quotes and
    brackets, then every pair of adjacent quotes (a string without brackets,
    or the end of one string and the start of the next: nothing kept lies
    between them), then what strings remain. Each step is one C loop over the
    bytes (replace, translate, accumulate): a fraction of the parse itself.
    """
    kept = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _DROP)
    kept = kept.replace(b'""', b"")
    if b'"' in kept:
        kept = _STRING.sub(b"", kept)
    return max(accumulate(array("b", kept.translate(_SIGNS))), default=0)


def loads(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed JSON, or JsonError with a message fit to answer with a 400."""
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if nesting_depth(body) > max_depth:
        raise JsonError(f"The JSON is nested deeper than {max_depth} levels.")
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        # Only for text the count above misjudged (say, an unterminated string).
        raise JsonError(f"The JSON is nested deeper than {max_depth} levels.") from None
    except UnicodeDecodeError:
        raise JsonError("The body is not valid UTF-8 JSON.") from None
    except json.JSONDecodeError as exc:
        why = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise JsonError(f"The body is not valid JSON ({why}).") from None


def _refuse_constant(name: str):
    # Python reads NaN and Infinity, which are not JSON: PostgreSQL's jsonb refuses them.
    raise JsonError(f"The body is not valid JSON ({name} is not a JSON number).")
