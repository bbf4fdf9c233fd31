"""Job arguments: a safe parser for Lua table constructors, and the job spec they describe.

A job's command is e.g. ``sim {exec_time=120, io=1, io_workload=3}``: the words after the first
one are a Lua table constructor telling Orpheus how long the job runs (docs/job-arguments.md).
The seed evaluated them with Lua's ``loadstring``, so any user could run code in the daemon;
here they are parsed as data and nothing is ever evaluated.

Written by hand (a small tokenizer and recursive-descent parser) because no maintained PyPI
package parses Lua table constructors both exactly and safely: ``lupa`` embeds and runs a real
Lua interpreter (the very thing to avoid); ``slpp``, ``luadata``, ``lua-table`` and
``luatables`` are small regular-expression decoders, unmaintained or made for one program's
dump format, without long strings, ``\\z``/``\\u{}`` escapes, hex floats, Lua's duplicate-key
rules or error positions; ``luaparser`` builds an AST of whole Lua programs on the ANTLR
runtime, with its own error reporting and deep recursion, so a walker rejecting everything but
literals would still be needed on top. The semantics follow Lua 5.4 (checked against the real
``lua5.4`` in tests/unit/test_spec.py): integers are 64-bit and wrap in hex, a decimal integer
too large for 64 bits is a float, float keys with an integral value become integer keys,
positional items are stored in batches of 50 after the keyed fields before them (so
``{[1]="a", "b"}`` gives ``{1: "b"}``), a nil value removes its key.

Where Python cannot mirror Lua the parser refuses with a SpecError: strings must be valid
UTF-8 text (Lua strings are bytes), a table cannot be a key, and ``true``/``1`` (or
``false``/``0``) cannot both be keys of one table (they are one key in a Python dict).
Expressions are refused, except unary minus on numbers; parentheses too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from orpheus.errors import OrpheusError

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "JobSpec", "SpecError", "parse_command", "parse_table"]

MAX_LENGTH = 64 * 1024
"""Longest text accepted, in characters."""
MAX_DEPTH = 100
"""Deepest nesting accepted: enclosing tables plus unary minus signs."""

_LUA_SPACE = " \t\n\r\f\v"
_SPACE_RE = re.compile(r"[ \t\n\r\f\v]+")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DEC_NUMERAL_RE = re.compile(r"(?:[Ee][+-]?|[0-9a-fA-F.])*[A-Za-z_]?")
_HEX_NUMERAL_RE = re.compile(r"(?:[Pp][+-]?|[0-9a-fA-F.])*[A-Za-z_]?")
# numerals as C's strtod reads them (written without ambiguity: no backtracking blow-up)
_DEC_FLOAT_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT_RE = re.compile(
    r"(?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
)
_HEX_DIGITS_RE = re.compile(r"[0-9a-fA-F]+")
_DEC_DIGITS_RE = re.compile(r"[0-9]{1,3}")
_PLAIN_RE = {q: re.compile(r"[^\\\n\r" + q + "]+") for q in "'\""}
_LINE_REST_RE = re.compile(r"[^\n\r]*")
_LONG_OPEN_RE = re.compile(r"\[(=*)\[")
_NEWLINE_RE = re.compile(r"\r\n|\n\r|\r|\n")
_OPERATORS = ("...", "..", "==", "~=", "<=", ">=", "<<", ">>", "//", "::")
_SINGLE_OPS = frozenset("{}[]()=,;+-*/%^#&~|<>:.")
_RESERVED = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
))
_DIGITS = frozenset("0123456789")
_SIMPLE_ESCAPES = {
    "a": b"\a", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v",
    "\\": b"\\", '"': b'"', "'": b"'",
}
_FLUSH = 50  # Lua's LFIELDS_PER_FLUSH: positional items are stored in batches of this size
_INT_BITS = 1 << 64


class SpecError(OrpheusError, ValueError):
    """Malformed job arguments; the message says what is wrong and at which column."""

    def __init__(self, message: str, position: int = -1) -> None:
        super().__init__(message)
        self.position = position


def _where(text: str, pos: int) -> str:
    """'column C' (1-based), with the line when the text has several (a line ends, as in Lua,
    at \\n, \\r, \\r\\n or \\n\\r)."""
    breaks = len(_NEWLINE_RE.findall(text, 0, pos))
    column = pos - max(text.rfind("\n", 0, pos), text.rfind("\r", 0, pos))
    return f"column {column}" if not breaks else f"line {breaks + 1}, column {column}"


def _clip(text: str, limit: int = 30) -> str:
    """User text for an error message: at most `limit` characters, control characters (and
    lone surrogates) escaped, so that the message stays short and on one line."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "keyword", "number", "string", "op" or "eof"
    value: object
    pos: int
    end: int


_EXPRESSION_HINT = "only literal values are allowed, no variables, operators, calls or expressions"


class _Parser:
    """Tokenizer and parser over text[start:] for one table constructor."""

    def __init__(self, text: str, start: int = 0) -> None:
        self.text = text
        self.i = start
        self.ahead: list[_Token] = []
        self.depth = 0
        self.top_positions: dict[object, int] = {}

    # -- errors ---------------------------------------------------------------------------
    def error(self, message: str, pos: int, why: str = "") -> SpecError:
        """'<message> at column C[: <why>]'."""
        where = f"{message} at {_where(self.text, pos)}"
        return SpecError(f"{where}: {why}" if why else where, pos)

    def describe(self, tok: _Token) -> str:
        """How a token is named in error messages: `'+'`, `name 'x'`, `string "a"`..."""
        if tok.kind == "eof":
            return "end of text"
        if tok.kind == "op":
            return f"'{tok.value}'"
        snippet = _clip(self.text[tok.pos : tok.end], 24)
        return f"{tok.kind} {snippet}" if tok.kind in ("number", "string") else (
            f"{tok.kind} '{snippet}'"
        )

    # -- tokenizer ------------------------------------------------------------------------
    def peek(self, k: int = 0) -> _Token:
        while len(self.ahead) <= k:
            self.ahead.append(self.scan())
        return self.ahead[k]

    def next(self) -> _Token:
        tok = self.peek()
        self.ahead.pop(0)
        return tok

    def skip_space_and_comments(self) -> None:
        text = self.text
        while True:
            m = _SPACE_RE.match(text, self.i)
            if m:
                self.i = m.end()
            if not text.startswith("--", self.i):
                return
            start = self.i
            self.i += 2
            long_open = _LONG_OPEN_RE.match(text, self.i)
            if long_open:
                self.i = self.long_bracket_end(long_open, start, "long comment")[1]
            else:
                m = _LINE_REST_RE.match(text, self.i)
                assert m is not None  # the pattern matches the empty string
                self.i = m.end()

    def long_bracket_end(self, opening: re.Match[str], start: int, what: str) -> tuple[int, int]:
        """(content end, token end) of the long bracket opened by `opening`."""
        close = "]" + opening.group(1) + "]"
        end = self.text.find(close, opening.end())
        if end < 0:
            raise self.error(f"unfinished {what} starting", start, f"no closing '{_clip(close)}'")
        return end, end + len(close)

    def scan(self) -> _Token:
        self.skip_space_and_comments()
        text, start = self.text, self.i
        if start >= len(text):
            return _Token("eof", None, start, start)
        c = text[start]
        if c.isascii() and (c.isalpha() or c == "_"):
            m = _NAME_RE.match(text, start)
            assert m is not None
            self.i = m.end()
            kind = "keyword" if m.group() in _RESERVED else "name"
            return _Token(kind, m.group(), start, self.i)
        if c in _DIGITS or (c == "." and text[start + 1 : start + 2] in _DIGITS):
            return self.number(start)
        if c in "'\"":
            return self.short_string(start)
        if c == "[":
            long_open = _LONG_OPEN_RE.match(text, start)
            if long_open:
                return self.long_string(long_open, start)
            if text.startswith("[=", start):
                raise self.error("invalid long string delimiter", start)
        for op in _OPERATORS:
            if text.startswith(op, start):
                self.i = start + len(op)
                return _Token("op", op, start, self.i)
        if c in _SINGLE_OPS:
            self.i = start + 1
            return _Token("op", c, start, self.i)
        raise self.error(f"unexpected character {c!r}", start, _EXPRESSION_HINT)

    def number(self, start: int) -> _Token:
        text = self.text
        is_hex = text.startswith(("0x", "0X"), start)
        pattern = _HEX_NUMERAL_RE if is_hex else _DEC_NUMERAL_RE
        m = pattern.match(text, start + (2 if is_hex else 1))
        assert m is not None
        self.i = m.end()
        lexeme = text[start : self.i]
        value = _hex_number(lexeme[2:]) if is_hex else _decimal_number(lexeme)
        if value is None:
            raise self.error(f"malformed number '{_clip(lexeme)}'", start)
        return _Token("number", value, start, self.i)

    def short_string(self, start: int) -> _Token:
        text, quote = self.text, self.text[start]
        plain = _PLAIN_RE[quote]
        parts: list[bytes] = []
        i = start + 1
        while True:
            m = plain.match(text, i)
            if m:
                parts.append(m.group().encode("utf-8", "surrogatepass"))
                i = m.end()
            if i >= len(text) or text[i] in "\n\r":
                raise self.error("unfinished string starting", start)
            if text[i] == quote:
                break
            i = self.escape(i, parts)
        self.i = i + 1
        return _Token("string", self.utf8(b"".join(parts), start), start, self.i)

    def escape(self, i: int, parts: list[bytes]) -> int:
        """Decode the escape sequence at text[i] (a backslash); return the index after it."""
        text = self.text
        c = text[i + 1 : i + 2]
        if not c:
            raise self.error("unfinished string", i, "backslash at end of text")
        if c in _SIMPLE_ESCAPES:
            parts.append(_SIMPLE_ESCAPES[c])
            return i + 2
        if c in "\n\r":
            parts.append(b"\n")
            nl = _NEWLINE_RE.match(text, i + 1)
            assert nl is not None
            return nl.end()
        if c == "z":
            j = i + 2
            while j < len(text) and text[j] in _LUA_SPACE:
                j += 1
            return j
        if c == "x":
            digits = text[i + 2 : i + 4]
            if len(digits) < 2 or not _HEX_DIGITS_RE.fullmatch(digits):
                raise self.error("'\\x' escape needs two hexadecimal digits", i)
            parts.append(bytes([int(digits, 16)]))
            return i + 4
        if c == "u":
            return self.unicode_escape(i, parts)
        m = _DEC_DIGITS_RE.match(text, i + 1)
        if m:
            if int(m.group()) > 255:
                raise self.error(f"decimal escape '\\{m.group()}' too large", i, "at most 255")
            parts.append(bytes([int(m.group())]))
            return m.end()
        raise self.error(f"invalid escape sequence '\\{_clip(c)}'", i)

    def unicode_escape(self, i: int, parts: list[bytes]) -> int:
        text = self.text
        if text[i + 2 : i + 3] != "{":
            raise self.error("'\\u' escape without '{'", i, "write e.g. \\u{E9}")
        m = _HEX_DIGITS_RE.match(text, i + 3)
        if not m:
            raise self.error("'\\u{' escape needs hexadecimal digits", i)
        if text[m.end() : m.end() + 1] != "}":
            raise self.error("'\\u{' escape is missing its '}'", i)
        code = int(m.group(), 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise self.error(
                f"'\\u{{{_clip(m.group(), 12)}}}' is not a Unicode character", i,
                "strings must be UTF-8 text",
            )
        parts.append(chr(code).encode("utf-8"))
        return m.end() + 1

    def long_string(self, opening: re.Match[str], start: int) -> _Token:
        content_end, self.i = self.long_bracket_end(opening, start, "long string")
        content = self.text[opening.end() : content_end]
        first_newline = _NEWLINE_RE.match(content)
        if first_newline:
            content = content[first_newline.end() :]
        content = _NEWLINE_RE.sub("\n", content)
        return _Token("string", self.utf8(content.encode("utf-8", "surrogatepass"), start),
                      start, self.i)

    def utf8(self, raw: bytes, start: int) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(
                "string is not valid UTF-8 text", start, "check its \\ddd and \\x escapes"
            ) from None

    # -- parser ---------------------------------------------------------------------------
    def expect(self, op: str, context: str) -> _Token:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise self.unexpected(tok, f"'{op}' {context}")
        return tok

    def unexpected(self, tok: _Token, expected: str) -> SpecError:
        why = ""
        if tok.kind == "op" and tok.value not in ("}", "]", ",", ";", "=", "{"):
            why = _EXPRESSION_HINT
        elif expected.startswith("'}'") and tok.kind != "eof":
            why = "is a ',' missing between two fields?"
        return self.error(f"expected {expected} but found {self.describe(tok)}", tok.pos, why)

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                "nested too deeply", pos, f"at most {MAX_DEPTH} levels of tables and unary minus"
            )

    def table(self) -> dict[object, object]:
        """Parse `{ fields }` (the '{' is the next token)."""
        opening = self.expect("{", "to open a table")
        self.enter(opening.pos)
        top = self.depth == 1
        entries: dict[tuple[bool, object], tuple[object, object, int]] = {}
        pending: list[tuple[object, int]] = []
        count = 0

        def store(key: object, value: object, pos: int) -> None:
            tagged = (isinstance(key, bool), key)
            entries.pop(tagged, None)
            if value is not None:
                entries[tagged] = (key, value, pos)

        def flush() -> None:
            nonlocal count
            for value, pos in pending:
                count += 1
                store(count, value, pos)
            pending.clear()

        def unclosed(tok: _Token) -> SpecError:
            where = _where(self.text, opening.pos)
            return self.unexpected(tok, f"'}}' (or ',') to close the table opened at {where}")

        while not (self.peek().kind == "op" and self.peek().value == "}"):
            tok = self.peek()
            if tok.kind == "eof":
                raise unclosed(tok)
            named = self.peek(1).kind == "op" and self.peek(1).value == "="
            if tok.kind == "keyword" and named:
                raise self.error(
                    f"reserved word '{tok.value}' used as a field name", tok.pos,
                    f'write it as a key string: ["{tok.value}"] = ...'
                )
            if tok.kind == "name" and named:
                self.next()
                self.next()
                pos = self.peek().pos
                store(tok.value, self.value(), pos)
            elif tok.kind == "op" and tok.value == "[":
                self.next()
                key_pos = self.peek().pos
                key = self.key(self.value(), key_pos)
                self.expect("]", "to close the key")
                self.expect("=", "after the key")
                pos = self.peek().pos
                store(key, self.value(), pos)
            else:
                pending.append((self.value(), tok.pos))
                if len(pending) == _FLUSH:
                    flush()
            sep = self.peek()
            if not (sep.kind == "op" and sep.value in (",", ";")):
                break
            self.next()
        flush()
        closer = self.next()
        if not (closer.kind == "op" and closer.value == "}"):
            raise unclosed(closer)
        self.depth -= 1
        return self.build(entries, top)

    def build(
        self, entries: dict[tuple[bool, object], tuple[object, object, int]], top: bool
    ) -> dict[object, object]:
        result: dict[object, object] = {}
        for key, value, pos in entries.values():
            if key in result:
                other = next(k for k in result if k == key)
                raise self.error(
                    f"keys {_show(other)} and {_show(key)} cannot both be in one table", pos,
                    "true and 1 (false and 0) are one key in a Python dict",
                )
            result[key] = value
            if top:
                self.top_positions[key] = pos
        return result

    def key(self, value: object, pos: int) -> object:
        """Lua's key normalisation: nil and tables refused, integral floats to integers."""
        if value is None:
            raise self.error("table key is nil", pos)
        if isinstance(value, dict):
            raise self.error("a table cannot be used as a key", pos)
        if isinstance(value, float) and value.is_integer() and -(2**63) <= value < 2**63:
            return int(value)
        return value

    def value(self) -> object:
        """One literal value: number (with unary minus), string, boolean, nil or table."""
        tok = self.peek()
        minus = 0
        while tok.kind == "op" and tok.value == "-":
            self.next()
            minus += 1
            self.enter(tok.pos)
            tok = self.peek()
        self.depth -= minus
        if minus and tok.kind != "number":
            raise self.unexpected(tok, "a number after unary minus")
        if tok.kind == "op" and tok.value == "{":
            return self.table()
        self.next()
        if tok.kind in ("number", "string"):
            value = tok.value
            for _ in range(minus):
                value = _negate(value)  # type: ignore[arg-type]
            return value
        if tok.kind == "keyword" and tok.value in ("true", "false", "nil"):
            return {"true": True, "false": False, "nil": None}[tok.value]
        if tok.kind == "name":
            raise self.error(f"found name '{_clip(str(tok.value))}'", tok.pos,
                             f"{_EXPRESSION_HINT}; {self.name_hint(str(tok.value))}")
        if tok.kind == "keyword" and tok.value == "function":
            raise self.error("found a function definition", tok.pos, _EXPRESSION_HINT)
        raise self.unexpected(tok, "a value")

    def name_hint(self, name: str) -> str:
        """What the user may have meant by a name where a value was expected."""
        if name in ("inf", "nan"):
            return "it is not a number literal in Lua"
        if name.lower() in ("true", "false", "nil"):
            return f"Lua writes it in lower case: {name.lower()}"
        try:
            after = self.peek()
        except SpecError:  # the text after the name is malformed too: the name is the news
            after = _Token("eof", None, self.i, self.i)
        if after.kind == "string" or (after.kind == "op" and after.value in (".", ":", "(", "[")):
            if name == "math":
                return "math.huge is the literal 1e400 (infinity)"
            return "variables and calls are not evaluated"
        return f'a string is written in quotes: "{_clip(name)}"'


def _hex_number(body: str) -> int | float | None:
    """Lua hex numeral after '0x': integers wrap modulo 2**64, others are C hex floats."""
    if _HEX_DIGITS_RE.fullmatch(body):
        return _wrap(int(body, 16))
    if not _HEX_FLOAT_RE.fullmatch(body):
        return None
    try:
        return float.fromhex("0x" + body)
    except OverflowError:
        return math.inf


def _decimal_number(lexeme: str) -> int | float | None:
    """Lua decimal numeral: an integer if it fits in 64 bits, else a float."""
    if lexeme.isdigit():
        digits = lexeme.lstrip("0") or "0"
        if len(digits) <= 19 and int(digits) < 2**63:
            return int(digits)
        return float(lexeme)
    return float(lexeme) if _DEC_FLOAT_RE.fullmatch(lexeme) else None


def _wrap(n: int) -> int:
    """Two's-complement 64-bit wrap, as Lua's integer arithmetic."""
    n %= _INT_BITS
    return n - _INT_BITS if n >= 2**63 else n


def _negate(value: int | float) -> int | float:
    return _wrap(-value) if isinstance(value, int) else -value


def _check_length(text: str) -> None:
    if len(text) > MAX_LENGTH:
        raise SpecError(
            f"job arguments too long: {len(text)} characters, at most {MAX_LENGTH}", MAX_LENGTH
        )


def _parse_table_at(text: str, start: int) -> tuple[dict[object, object], dict[object, int]]:
    """Parse the one table constructor in text[start:]; also return its keys' value positions."""
    _check_length(text)
    parser = _Parser(text, start)
    tok = parser.peek()
    if not (tok.kind == "op" and tok.value == "{"):
        raise parser.error(
            f"expected a Lua table constructor '{{...}}' but found {parser.describe(tok)}", tok.pos
        )
    table = parser.table()
    tok = parser.peek()
    if tok.kind != "eof":
        raise parser.error(
            f"unexpected {parser.describe(tok)} after the table", tok.pos,
            "the arguments must be exactly one table constructor",
        )
    return table, parser.top_positions


def parse_table(text: str) -> dict[object, object]:
    """Parse one Lua table constructor (whitespace and comments around it allowed) to a dict."""
    return _parse_table_at(text, 0)[0]


def _readonly(table: dict[object, object]) -> Mapping[object, object]:
    return MappingProxyType(
        {k: _readonly(v) if isinstance(v, dict) else v for k, v in table.items()}
    )


@dataclass(frozen=True)
class JobSpec:
    """How a simulated job runs (docs/job-arguments.md lists every key)."""

    exec_time: float
    exit_code: int = 0
    io: bool = False
    io_workload: float = 0.0
    io_sensitivity: float = 1.0
    io_target: str = "default"
    fail_at: float | None = None
    fail_exit_code: int = 1
    checkpoint_exit: bool = False
    args: Mapping[object, object] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )


_SLEEP_RE = re.compile(f"(?:{_DEC_FLOAT_RE.pattern}|(?i:inf|infinity))([smhd]?)")
_SLEEP_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_command(command: str, default_exec_time: float = 10.0) -> JobSpec:
    """The JobSpec of an OAR job command: `prog {table}`, `{table}`, `sleep N...` or `prog`."""
    _check_length(command)
    stripped = command.lstrip(_LUA_SPACE)
    start = len(command) - len(stripped)
    if not stripped.startswith("{"):
        first = re.compile(r"[^ \t\n\r\f\v]*").match(command, start)
        assert first is not None
        word = first.group()
        if "{" in word:
            raise SpecError(
                f"the program name '{_clip(word)}' contains '{{': put a space before the table "
                f"(at {_where(command, start)})", start
            )
        rest = command[first.end() :]
        if not rest.strip(_LUA_SPACE):
            return JobSpec(exec_time=default_exec_time)
        start = len(command) - len(rest.lstrip(_LUA_SPACE))
        if word.rsplit("/", 1)[-1] == "sleep" and command[start] != "{":
            return JobSpec(exec_time=_sleep_seconds(command, start))
    table, positions = _parse_table_at(command, start)
    return _spec_from_table(command, table, positions, default_exec_time)


def decimal(text: str) -> float | None:
    """A plain decimal number as files and options write it (ASCII digits, optional sign,
    fraction and exponent; not ``nan``, ``inf``, ``1_0`` or ``0x10``), or None."""
    text = text.strip()
    unsigned = text[1:] if text[:1] in ("+", "-") else text
    return float(text) if _DEC_FLOAT_RE.fullmatch(unsigned) else None


def seconds(text: str) -> float:
    """A command-line duration (argparse ``type``): a finite number of seconds >= 0."""
    value = float(text)  # ValueError for a non-number: argparse says "invalid seconds value"
    if not 0 <= value < math.inf:
        raise ValueError(text)
    return value


def _sleep_seconds(command: str, start: int) -> float:
    """GNU sleep's arguments: durations with an optional s/m/h/d suffix, summed; ``infinity``
    (or a number beyond the largest float) gives ``inf``: the job runs until it is killed."""
    total = 0.0
    for m in re.finditer(r"[^ \t\n\r\f\v]+", command[start:]):
        duration = _SLEEP_RE.fullmatch(m.group())
        pos = start + m.start()
        if not duration:
            raise SpecError(
                f"sleep: invalid time interval '{_clip(m.group())}' at {_where(command, pos)} "
                "(a number of seconds, optionally with suffix s, m, h or d)", pos
            )
        total += float(m.group().rstrip("smhd")) * _SLEEP_UNITS[duration.group(1)]
    return total


def _spec_from_table(
    command: str, table: dict[object, object], positions: dict[object, int], default: float
) -> JobSpec:
    """Check the known keys' types and ranges; build the JobSpec."""
    sensitivity = "io_sensitivity"
    if "io_sensivity" in table:
        if sensitivity in table:
            pos = positions["io_sensivity"]
            raise SpecError(
                "give io_sensitivity or its old spelling io_sensivity, not both "
                f"(at {_where(command, pos)})", pos
            )
        sensitivity = "io_sensivity"
    fields: dict[str, object] = {"exec_time": float(default)}
    for name, key, kind in (
        ("exec_time", "exec_time", "duration"),
        ("exit_code", "exit_code", "status"),
        ("io", "io", "flag01"),
        ("io_workload", "io_workload", "duration"),
        ("io_sensitivity", sensitivity, "fraction"),
        ("io_target", "io_target", "string"),
        ("fail_at", "fail_at", "duration"),
        ("fail_exit_code", "fail_exit_code", "status"),
        ("checkpoint_exit", "checkpoint_exit", "flag"),
    ):
        if key in table:
            value, expected = _check(kind, table[key])
            if expected:
                pos = positions[key]
                raise SpecError(
                    f"{key} must be {expected}, but is {_show(table[key])} "
                    f"(at {_where(command, pos)})", pos
                )
            fields[name] = value
    return JobSpec(**fields, args=_readonly(table))  # type: ignore[arg-type]


_EXPECTED = {
    "duration": "a finite number >= 0",
    "status": "an integer from 0 to 255",
    "flag01": "true or false (or 1 or 0)",
    "fraction": "a number from 0 to 1",
    "string": "a string",
    "flag": "true or false",
}


def _check(kind: str, value: object) -> tuple[object, str]:
    """(converted value, "") if `value` is of `kind`, else (None, what was expected)."""
    if isinstance(value, bool):
        ok = kind in ("flag", "flag01")
    elif isinstance(value, int | float):
        ok = (
            (kind == "duration" and 0 <= value < math.inf)
            or (kind == "status" and value in range(256))
            or (kind == "fraction" and 0 <= value <= 1)
            or (kind == "flag01" and value in (0, 1))
        )
        if ok:
            if kind == "status":
                value = int(value)
            elif kind == "flag01":
                value = bool(value)
            else:
                value = float(value) + 0.0  # + 0.0: -0.0 is 0.0 in the spec
    else:
        ok = kind == "string" and isinstance(value, str)
    return (value, "") if ok else (None, _EXPECTED[kind])


def _show(value: object) -> str:
    """A value as Lua would write it, shortened, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str):
        return "the string " + (repr(value) if len(value) <= 30 else repr(value[:27]) + "...")
    return repr(value)
