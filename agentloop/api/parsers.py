"""The REST API's JSON parser: DRF's, reading through agentloop.safe_json.

DRF's own JSONParser lets a deeply nested body's RecursionError through as a
500; this one answers it, like any JSON it cannot take, with a 400 naming why.
"""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from agentloop import safe_json


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return safe_json.loads(stream.read() if stream is not None else b"")
        except safe_json.JsonError as exc:
            raise ParseError(str(exc)) from None
