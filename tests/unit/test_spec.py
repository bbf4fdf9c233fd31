"""orpheus.spec: Lua table constructors parsed safely, job commands turned into JobSpecs.

Real Lua 5.4 is the oracle: generated tables (random layout, comments, quotes, escapes, key
styles) and mutations of them are run through `lua5.4` and must give the same value, or be
refused by both. Lua prints a canonical form that `canon` below computes in Python.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orpheus.spec import (
    MAX_DEPTH,
    MAX_LENGTH,
    JobSpec,
    SpecError,
    decimal,
    parse_command,
    parse_table,
)

# -- the oracle -------------------------------------------------------------------------------

LUA = "lua5.4"
_DRIVER = r"""
local function canon(v)
  local t = type(v)
  if t == "boolean" then return v and "T" or "F"
  elseif t == "number" then
    if math.type(v) == "integer" then return "i" .. string.format("%d", v) end
    return "f" .. string.format("%.17g", v)
  elseif t == "string" then
    return "s" .. v:gsub(".", function(c) return string.format("%02x", c:byte()) end)
  elseif t == "table" then
    local items = {}
    for k, x in pairs(v) do items[#items + 1] = canon(k) .. "=" .. canon(x) end
    table.sort(items)
    return "{" .. table.concat(items, ",") .. "}"
  end
  error("value of type " .. t)
end
for src in (io.read("a") .. "\0"):gmatch("([^\0]*)\0") do
  local f, err = load("return " .. src, "=src", "t", {})
  local ok, v = false, err
  if f then ok, v = pcall(f) end
  if ok and type(v) == "table" then print("OK " .. canon(v))
  else print((("ERR " .. tostring(v)):gsub("[\r\n]", " "))) end
end
"""


def canon(value: object) -> str:
    """What the Lua driver prints for the same value."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        return f"i{value}"
    if isinstance(value, float):
        return f"f{value:.17g}"
    if isinstance(value, str):
        return "s" + value.encode().hex()
    assert isinstance(value, dict), value
    return "{" + ",".join(sorted(f"{canon(k)}={canon(v)}" for k, v in value.items())) + "}"


def lua_eval(sources: list[str]) -> list[str]:
    """'OK <canon>' or 'ERR <message>' for each text, as real Lua 5.4 evaluates it."""
    if shutil.which(LUA) is None:
        pytest.fail(f"{LUA} is missing: these differential tests need it (apt-get install lua5.4)")
    assert all("\0" not in s for s in sources)
    out = subprocess.run(
        [LUA, "-e", _DRIVER], input="\0".join(sources).encode("utf-8", "surrogatepass"),
        capture_output=True, timeout=60, check=True,
    ).stdout.decode("utf-8", "replace")
    lines = out.split("\n")[:-1]  # not splitlines(): Lua's messages may quote a U+0085 or \f
    assert len(lines) == len(sources), out
    return lines


def ours(source: str) -> str:
    """Our verdict in the oracle's form."""
    try:
        return "OK " + canon(parse_table(source))
    except SpecError as exc:
        return f"ERR {exc}"


# -- generated tables and their Lua text ------------------------------------------------------

RESERVED = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}
INT64 = st.integers(-(2**63), 2**63 - 1)
SCALARS = st.one_of(st.booleans(), INT64, st.floats(allow_nan=False), st.text(max_size=12))
KEYS = st.one_of(
    st.text(max_size=8),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
    INT64,
    st.integers(1, 60),
    st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
    st.booleans(),
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.dictionaries(KEYS, inner, max_size=5), max_leaves=12
)
TABLES = st.dictionaries(KEYS, VALUES, max_size=8)
SPACES = ["", " ", "  ", "\t", "\n", "\r\n", " -- note\n", " --[[ a ]] ", " --[==[ ]] ]==]\n"]


class Writer:
    """Serialises Python values to Lua text, choosing the layout at random."""

    def __init__(self, rnd) -> None:
        self.rnd = rnd

    def space(self) -> str:
        return self.rnd.choice(SPACES)

    def value(self, v: object) -> str:
        if v is None:
            return "nil"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return self.integer(v)
        if isinstance(v, float):
            return self.number(v)
        if isinstance(v, str):
            return self.string(v)
        assert isinstance(v, dict)
        return self.table(v)

    def integer(self, n: int) -> str:
        if n == -(2**63) or (n < 0 and self.rnd.random() < 0.3):
            return self.rnd.choice(["0x", "0X"]) + format(n % 2**64, self.rnd.choice("xX"))
        if n < 0:
            return "-" + self.space() + str(-n)
        if self.rnd.random() < 0.3:
            return "0x" + "0" * self.rnd.randrange(3) + format(n, "x")
        return str(n)

    def number(self, x: float) -> str:
        if math.isinf(x):
            text = self.rnd.choice(["1e400", "0x1p9999", "9" * 400 + ".0"])
        else:
            text = self.rnd.choice([repr(abs(x)), float.hex(abs(x)), f"{abs(x):.17e}"])
        return ("- " if math.copysign(1, x) < 0 else "") + text

    def string(self, s: str) -> str:
        printable = all(c.isprintable() or c in "\n\t" for c in s) and "\r" not in s
        if printable and self.rnd.random() < 0.25:
            level = "=" * self.rnd.randrange(3)
            close = f"]{level}]"
            if (s + close).find(close) == len(s):  # Lua reads every newline pair as one
                lead = self.rnd.choice(["\n", "\r\n", "\n\r"] + [""] * (not s.startswith("\n")))
                body = "".join(self.rnd.choice(["\n", "\r\n", "\n\r"]) if c == "\n" else c
                               for c in s)
                return f"[{level}[{lead}{body}{close}"
        quote = self.rnd.choice("'\"")
        skipped = "\\z \n\t " if self.rnd.random() < 0.1 else ""  # \z skips what follows
        return quote + "".join(self.char(c, quote) for c in s) + skipped + quote

    def char(self, c: str, quote: str) -> str:
        raw = c not in (quote, "\\") and c.isprintable()
        choice = self.rnd.randrange(6)
        utf8 = c.encode()
        if raw and choice < 2:
            return c
        if choice == 2:
            return "".join(f"\\{b:03d}" for b in utf8)
        if choice == 3:
            return "".join(f"\\x{b:02x}" for b in utf8)
        if choice == 4:
            return f"\\u{{{'0' * self.rnd.randrange(2)}{ord(c):X}}}"
        named = {"\n": "\\n", "\t": "\\t", "\\": "\\\\", '"': '\\"', "'": "\\'", "\a": "\\a",
                 "\b": "\\b", "\f": "\\f", "\v": "\\v", "\r": "\\r"}
        if c == "\n" and self.rnd.random() < 0.5:
            return "\\" + self.rnd.choice(["\n", "\r", "\r\n", "\n\r"])
        return named.get(c, c if raw else "".join(f"\\{b:03d}" for b in utf8))

    def key(self, k: object) -> str:
        if isinstance(k, str) and re.fullmatch(r"[A-Za-z_]\w*", k, re.ASCII) and (
            k not in RESERVED and self.rnd.random() < 0.7
        ):
            return k
        return "[ " + self.value(k) + " ]"

    def table(self, t: dict[object, object]) -> str:
        ints = {k: v for k, v in t.items() if type(k) is int}  # t.get(1) would find True
        last = self.rnd.randint(0, max((k for k in ints if 1 <= k <= 60), default=0))
        positional = [ints.get(i) for i in range(1, last + 1)]
        keyed = [(k, v) for k, v in t.items() if not (type(k) is int and 1 <= k <= last)]
        fields: list[str] = []
        for k, v in keyed:
            if self.rnd.random() < 0.15:  # an earlier value that the later one replaces
                fields.append(f"{self.key(k)}={self.value(self.rnd.choice([0, 'x', None]))}")
            fields.append(f"{self.key(k)}{self.space()}={self.space()}{self.value(v)}")
        if self.rnd.random() < 0.2:
            fields.append("absent_key_x = nil")
        # positional and keyed fields are interleaved at random, each list keeping its order
        pending = [self.value(v) for v in positional]
        items: list[str] = []
        while pending or fields:
            source = pending if not fields or (pending and self.rnd.random() < 0.5) else fields
            items.append(source.pop(0))
        out = "{" + self.space()
        for i, item in enumerate(items):
            out += item + self.space()
            if i < len(items) - 1 or self.rnd.random() < 0.3:
                out += self.rnd.choice(",;") + self.space()
        return out + "}"

    def document(self, t: dict[object, object]) -> str:
        return self.space() + self.table(t) + self.space()


# A dict never holds both True and 1: TABLES cannot draw such a pair, which Python refuses too.


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(TABLES, st.randoms(use_true_random=False))
def test_generated_tables_parse_back(table, rnd) -> None:
    text = Writer(rnd).document(table)
    assert canon(parse_table(text)) == canon(table), text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TABLES, st.randoms(use_true_random=False))
def test_real_lua_agrees_on_generated_tables(table, rnd) -> None:
    text = Writer(rnd).document(table)
    assert lua_eval([text]) == ["OK " + canon(table)], text
    assert ours(text) == "OK " + canon(table), text


MUTATION_ALPHABET = "{}[]=,;-+.\"'\\ \n0123456789xXeEpPabnrtuz(){}_#~<>:/%^&|[[]]" + "é"


@st.composite
def mutated(draw) -> str:
    """A generated table's text with a few characters deleted, inserted or replaced."""
    text = Writer(draw(st.randoms(use_true_random=False))).document(draw(TABLES))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["delete", "insert", "replace"]))
        c = draw(st.sampled_from(MUTATION_ALPHABET))
        if op == "insert":
            text = text[:i] + c + text[i:]
        else:
            text = text[:i] + (c if op == "replace" else "") + text[i + 1 :]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_whatever_we_accept_real_lua_reads_the_same(text) -> None:
    """Ours accepts => Lua accepts with the same value (so Lua refuses => we refuse)."""
    mine = ours(text)
    if mine.startswith("OK"):
        assert lua_eval([text]) == [mine], text


TRICKY = [
    '{[1]="a", "b"}',  # positional items are stored after the keyed fields before them
    '{"b", [1]="a"}',
    '{[1]="a", nil}',  # a positional nil still takes index 1 and removes it
    "{" + ",".join(str(i) for i in range(1, 51)) + ', [50]="k", [51]="k2", 51}',
    "{" + ",".join(str(i) for i in range(1, 50)) + ', [50]="k", 50}',
    "{" + ",".join(str(i) for i in range(1, 121)) + ', [100]="k"}',
    "{" + "[120]=1, " + ",".join(str(i) for i in range(1, 121)) + "}",
    "{" + ",".join(str(i) for i in range(1, 31)) + ', [5]="k"}',
    "{" + ",".join(str(i) for i in range(1, 61)) + ', [5]="k", [55]="k"}',
    "{x=1, x=nil}",
    "{x=nil, x=2}",
    "{[2.0]=1, [-0.0]=2, [0.5]=3, [1e400]=4, [-1e400]=5, [1e300]=6}",
    "{0xffffffffffffffff, 0x7fffffffffffffff, 0x8000000000000000, 0x10000000000000001}",
    "{9223372036854775807, 9223372036854775808, -9223372036854775808, - - 3, -0x1}",
    "{1e400, -1e400, 1e-400, 0x1p-1074, 0x1p99999, 0x.8, 0x1.8P+1, 5., .5e1, 0XA.8p0}",
    "{0x1.fffffffffffff8p1023, 1.7976931348623158e308, 2.5E-2, 1E+3, 0x1P4}",
    "{'\\65\\066\\x41\\u{41}\\u{00E9}\\u{1F600}', \"a\\z  \n  b\", 'x\\\ny', 'x\\\r\ny'}",
    "{[[\nfirst newline skipped]], [==[\r\nalso ]] ]=] here]==], [[a\r\nb\n\rc\rd]]}",
    "{[ [[k]] ] = 1, [ [==[k2]==] ]=2, ['k3']=3, [\"and\"]=4}",
    "{ --[[ c ]] a --[==[ c ]==] = -- c\n 1 }",
    "{{{}}, {{1}}, t = {u = {v = {}}}}",
    "{1; 2, 3;}",
    "{'\\0\\1\\255'}",
    "{[ [[\n]] ] = 'newline key is empty'}",
]


def test_real_lua_agrees_on_tricky_tables() -> None:
    verdicts = lua_eval(TRICKY)
    for text, verdict in zip(TRICKY, verdicts, strict=True):
        mine = ours(text)
        if text == "{'\\0\\1\\255'}":  # bytes that are not UTF-8: Lua takes them, we refuse
            assert verdict.startswith("OK") and mine.startswith("ERR"), (text, mine)
        else:
            assert mine == verdict, text


# -- syntax, item by item ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", {}),
        ("  {  }  ", {}),
        ("-- lead\n{} -- trail", {}),
        ("--[[ lead ]] {} --[==[ trail ]==]", {}),
        ("{a=1, b=2}", {"a": 1, "b": 2}),
        ("{a=1; b=2;}", {"a": 1, "b": 2}),
        ("{a=1,}", {"a": 1}),
        ("{_x9=1}", {"_x9": 1}),
        ('{["a b"]=1, [3]=2, [true]=3, [0.5]=4}', {"a b": 1, 3: 2, True: 3, 0.5: 4}),
        ("{'a', 'b', 'c'}", {1: "a", 2: "b", 3: "c"}),
        ("{'a', k=1, 'b'}", {1: "a", "k": 1, 2: "b"}),
        ("{a={b={c=1}}}", {"a": {"b": {"c": 1}}}),
        ("{a=nil, b=1}", {"b": 1}),
        ("{a=1, a=2}", {"a": 2}),
        ("{a=1, a=nil}", {}),
        ("{nil, 2}", {2: 2}),
        ("{true, false}", {1: True, 2: False}),
        ("{[1.0]=1, [2]=2}", {1: 1, 2: 2}),
        ("{[1e400]=1}", {math.inf: 1}),
        ("{a=5--c\n, b=-5--[[c]], c=- --[==[c]==]\n5}", {"a": 5, "b": -5, "c": -5}),
        ("{0x1e--5\n}", {1: 30}),  # 'e' is a hex digit: no exponent, then a comment
        ("{\r\n\tend_=1\f,\vnil_=2\r}", {"end_": 1, "nil_": 2}),
    ],
)
def test_tables(text: str, expected: dict[object, object]) -> None:
    assert canon(parse_table(text)) == canon(expected)


def test_integral_float_keys_become_integers() -> None:
    assert [type(k) for k in parse_table("{[1.0]=1, [-0.0]=2, [0.5]=3}")] == [int, int, float]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0", 0), ("42", 42), ("007", 7), ("3.0", 3.0), ("3.", 3.0), (".5", 0.5), ("1e3", 1000.0),
        ("2.5E-2", 0.025), ("1E+2", 100.0), ("0x1F", 31), ("0XfF", 255), ("0x1p4", 16.0),
        ("0x.8", 0.5), ("0x1.8p1", 3.0), ("0xA.8P0", 10.5), ("-3", -3), ("- 3", -3),
        ("- - 3", 3), ("-\n3", -3), ("-0.0", -0.0), ("1e400", math.inf), ("-1e400", -math.inf),
        ("1e-400", 0.0), ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", 9.223372036854775808e18), ("0xffffffffffffffff", -1),
        ("0x10000000000000000", 0), ("-0x8000000000000000", -(2**63)),
        ("0x1p99999", math.inf), ("1" + "0" * 5000, math.inf),
    ],
)
def test_numbers(literal: str, expected: float) -> None:
    value = parse_table("{" + literal + "}")[1]
    assert canon(value) == canon(expected)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("'plain'", "plain"), ('"dq"', "dq"), ("''", ""), ("'it''s'", None),
        (r"'\a\b\f\n\r\t\v'", "\a\b\f\n\r\t\v"), (r"'\\ \" \''", "\\ \" '"),
        ("'a\\\nb'", "a\nb"), ("'a\\\r\nb'", "a\nb"), ("'a\\\n\rb'", "a\nb"),
        (r"'\65\066\0689'", "AB\x449"), (r"'\x41\x6a'", "Aj"), (r"'\u{41}\u{e9}\u{1F600}'", "Aé😀"),
        ("'a\\z \n\t  b'", "ab"), (r"'\195\169'", "é"), ("'é😀'", "é😀"), ("'--[[x]]'", "--[[x]]"),
        ("[[long]]", "long"), ("[[\nskip first newline]]", "skip first newline"),
        ("[[\r\nskip]]", "skip"), ("[[a\r\nb\rc]]", "a\nb\nc"), ("[==[a]]b]=]c]==]", "a]]b]=]c"),
        ("[[\\n stays]]", "\\n stays"), ("[[\n\nsecond stays]]", "\nsecond stays"),
    ],
)
def test_strings(literal: str, expected: str | None) -> None:
    if expected is None:  # two adjacent strings: Lua would call the first one
        with pytest.raises(SpecError):
            parse_table("{" + literal + "}")
    else:
        assert parse_table("{" + literal + "}") == {1: expected}


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("", "expected a Lua table constructor", 1),
        ("x", "found name 'x'", 1),
        ("{", "expected '}'", 2),
        ("{a=1", "expected '}'", 5),
        ("{a=1 b=2}", "is a ',' missing", 6),
        ("{}}", "after the table", 3),
        ("{} {}", "exactly one table", 4),
        ("{,}", "expected a value but found ','", 2),
        ("{a=}", "expected a value but found '}'", 4),
        ("{=1}", "expected a value but found '='", 2),
        ("{[1]}", "expected '=' after the key", 5),
        ("{[1=2}", "expected ']'", 4),
        ("{x=y}", "found name 'y'", 4),
        ("{y}", "found name 'y'", 2),
        ('{os.execute("rm -rf /")}', "found name 'os'", 2),
        ("{a=f()}", "found name 'f'", 4),
        ("{1+2}", "found '+'", 3),
        ("{1 - 2}", "found '-'", 4),
        ("{2*3}", "found '*'", 3),
        ("{'a'..'b'}", "found '..'", 5),
        ("{#t}", "found '#'", 2),
        ("{~1}", "found '~'", 2),
        ("{not true}", "keyword 'not'", 2),
        ("{a=1==1}", "found '=='", 5),
        ("{(1)}", "found '('", 2),
        ("{a=function() end}", "function definition", 4),
        ("{...}", "found '...'", 2),
        ("{-'3'}", "a number after unary minus", 3),
        ("{-{}}", "a number after unary minus", 3),
        ("{-true}", "a number after unary minus", 3),
        ("{inf}", "not a number literal", 2),
        ("{nan}", "not a number literal", 2),
        ("{and=1}", "reserved word 'and'", 2),
        ("{goto=1}", "reserved word 'goto'", 2),
        ("{[nil]=1}", "key is nil", 3),
        ("{[{}]=1}", "table cannot be used as a key", 3),
        ("{[true]=1, 'x'}", "cannot both be in one table", 12),
        ("{[0]=1, [false]=2}", "cannot both be in one table", 17),
        ("{3..2}", "malformed number '3..2'", 2),
        ("{1e}", "malformed number", 2),
        ("{0x}", "malformed number", 2),
        ("{0x1p}", "malformed number", 2),
        ("{3a}", "malformed number", 2),
        ("{12_000}", "malformed number", 2),
        ("{'abc}", "unfinished string", 2),
        ("{'ab\nc'}", "unfinished string", 2),
        ("{'ab\\", "unfinished string", 5),
        ("{'\\q'}", "invalid escape sequence '\\q'", 3),
        ("{'\\256'}", "too large", 3),
        ("{'\\xG1'}", "two hexadecimal digits", 3),
        ("{'\\x4'}", "two hexadecimal digits", 3),
        ("{'\\u41'}", "without '{'", 3),
        ("{'\\u{}'}", "needs hexadecimal digits", 3),
        ("{'\\u{41'}", "missing its '}'", 3),
        ("{'\\u{D800}'}", "not a Unicode character", 3),
        ("{'\\u{110000}'}", "not a Unicode character", 3),
        ("{'\\255'}", "not valid UTF-8", 2),
        ("{'\\xC3'}", "not valid UTF-8", 2),
        ("{[[abc}", "unfinished long string", 2),
        ("{[==[abc]=]}", "no closing ']==]'", 2),
        ("{[=x]}", "invalid long string delimiter", 2),
        ("{--[[ open }", "unfinished long comment", 2),
        ("{a=@}", "unexpected character '@'", 4),
        ("{a=\u00e9}", "unexpected character 'é'", 4),
        ("{a=\u00a01}", "unexpected character", 4),
        ("{io=True}", "Lua writes it in lower case: true", 5),
        ("{x=None}", 'a string is written in quotes: "None"', 4),
        ("{exec_time=math.huge}", "math.huge is the literal 1e400", 12),
        ("{x=f'a'}", "variables and calls are not evaluated", 4),
        ("{x=y 'open}", "found name 'y'", 4),  # not the unfinished string after it
        ("{\r\r x=y}", "line 3, column 4", 7),  # a lone \r ends a line, as in Lua
        ("{\n\r\r\n x=y}", "line 3, column 4", 9),  # \n\r and \r\n are one line end each
        ("{\n  a = 1,\n  b = y }", "line 3, column 7", 18),
    ],
)
def test_errors(text: str, message: str, column: int) -> None:
    with pytest.raises(SpecError) as caught:
        parse_table(text)
    assert message in str(caught.value)
    assert caught.value.position == column - 1
    if "\n" not in text and "\r" not in text:
        assert f"column {column}" in str(caught.value)


def test_nesting_is_limited() -> None:
    deep = "{" * MAX_DEPTH + "}" * MAX_DEPTH
    assert parse_table(deep) == parse_table(deep)  # the limit itself is fine
    with pytest.raises(SpecError, match="nested too deeply"):
        parse_table("{" * (MAX_DEPTH + 1) + "}" * (MAX_DEPTH + 1))
    with pytest.raises(SpecError, match="nested too deeply"):
        parse_table("{" + "- " * MAX_DEPTH + "1}")
    assert parse_table("{" + "- " * (MAX_DEPTH - 2) + "1}") == {1: 1}


def test_length_is_limited() -> None:
    fits = "{'" + "a" * (MAX_LENGTH - 4) + "'}"
    assert parse_table(fits) == {1: "a" * (MAX_LENGTH - 4)}
    with pytest.raises(SpecError, match="too long"):
        parse_table(fits + " ")
    with pytest.raises(SpecError, match="too long"):
        parse_command("sim " + fits)


ADVERSARIAL = [
    "{" + "1" * (MAX_LENGTH - 3) + "x}",
    "{0x" + "1" * (MAX_LENGTH - 5) + "x}",
    "{" + "1" * (MAX_LENGTH - 6) + ".5e}",
    "{'" + "\\z" * (MAX_LENGTH // 2 - 3) + "'}",
    "{" + "[[" * (MAX_LENGTH // 2 - 1) + "}",
    "{" + "--[[" * (MAX_LENGTH // 4 - 1) + "}",
    "{" + "-" * (MAX_LENGTH - 2) + "}",
    "{" + "1," * (MAX_LENGTH // 2 - 1) + "}",
    "{" + "{}," * (MAX_LENGTH // 3 - 1) + "}",
    "{" + "a=1," * (MAX_LENGTH // 4 - 1) + "}",
    "{" + "'" * (MAX_LENGTH - 2) + "}",
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_largest_inputs_end_promptly(text: str) -> None:
    """Inputs at the length limit built to provoke backtracking or recursion end normally."""
    try:
        parse_table(text)
    except SpecError as exc:
        assert exc.position >= 0


@settings(max_examples=300)
@given(st.text(alphabet=MUTATION_ALPHABET, max_size=60) | st.text(max_size=60))
def test_garbage_raises_only_spec_error(text: str) -> None:
    for call in (parse_table, parse_command):
        try:
            call(text)
        except SpecError as exc:
            assert -1 <= exc.position <= len(text)


@settings(max_examples=200)
@given(mutated())
def test_mutations_raise_only_spec_error(text: str) -> None:
    try:
        parse_table(text)
    except SpecError as exc:
        assert 0 <= exc.position <= len(text)


TOKENS = [
    "{", "}", "[", "]", "[[", "]]", "[==[", "]==]", "=", ",", ";", "-", "--", "--[[", "'", '"',
    "\\", "\\z", "\\u{", "\\x", "\\9", "\\256", "0x", "1", "9", ".", "e", "p", "+", "a", "_",
    "end", "nil", "true", "exec_time", " ", "\n", "\r", "\t", "\0", "\x1b", "\ud800", "é", "\u2028",
    "inf", "1e999", "9223372036854775808", "(", ")", "#", ":", "...", "sim ", "sleep ", "x" * 200,
    "=" * 200, "f" * 200,
]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
def test_token_soup_gives_short_one_line_errors(text: str) -> None:
    """Any text: a result or a SpecError whose message is one short printable line (the
    daemon logs it on one line), never another exception, whatever user text it quotes."""
    for call, arg in ((parse_table, text), (parse_table, "{" + text), (parse_command, text)):
        try:
            call(arg)
        except SpecError as exc:
            assert str(exc).isprintable() and len(str(exc)) < 400, str(exc)
            assert -1 <= exc.position <= len(arg)


@pytest.mark.parametrize(
    "text",
    ["{" + "a" * 5000 + "}", "{[" + "=" * 5000 + "[}", "{'\\u{" + "f" * 5000 + "}'}",
     "{1 [[" + "\n" * 5000 + "]]}", "sim{" + "x" * 5000, "sleep " + "5" * 5000 + "x",
     "{'\\\0'}", "{\x1b[2J}", "sleep 5\x1b[2J"],
)
def test_errors_quote_user_text_short_and_printable(text: str) -> None:
    parse = parse_command if text.startswith("s") else parse_table
    with pytest.raises(SpecError) as caught:
        parse(text)
    assert str(caught.value).isprintable() and len(str(caught.value)) < 300, str(caught.value)


def test_parser_never_evaluates() -> None:
    with open(parse_table.__code__.co_filename, encoding="utf-8") as file:
        source = file.read()
    assert not re.search(r"(?<![.\w])(eval|exec|compile|__import__)\(", source)


# -- commands ---------------------------------------------------------------------------------


def test_command_with_every_key() -> None:
    spec = parse_command(
        "sim {exec_time=120.5, exit_code=3, io=true, io_workload=2.5, io_sensitivity=0.25,"
        " io_target='scratch', fail_at=60, fail_exit_code=42, checkpoint_exit=true, extra={1}}"
    )
    assert spec == JobSpec(
        exec_time=120.5, exit_code=3, io=True, io_workload=2.5, io_sensitivity=0.25,
        io_target="scratch", fail_at=60.0, fail_exit_code=42, checkpoint_exit=True,
        args=spec.args,
    )
    assert spec.args["extra"] == {1: 1}
    assert type(spec.exec_time) is float and type(spec.fail_at) is float
    assert type(spec.exit_code) is int and type(spec.io) is bool


def plain(mapping: object) -> object:
    """Read-only mappings (nested too) back to dicts."""
    if isinstance(mapping, MappingProxyType):
        return {k: plain(v) for k, v in mapping.items()}
    return mapping


def test_args_are_read_only() -> None:
    spec = parse_command("sim {exec_time=1, user={a=1}}")
    assert isinstance(spec.args, MappingProxyType)
    with pytest.raises(TypeError):
        spec.args["exec_time"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.args["user"]["a"] = 2  # type: ignore[index]
    assert dict(spec.args) == {"exec_time": 1, "user": {"a": 1}}


@pytest.mark.parametrize(
    ("command", "fields"),
    [
        ("sim {exec_time=120, io=1, io_workload=3}",
         {"exec_time": 120.0, "io": True, "io_workload": 3.0}),
        ("{exec_time=5}", {"exec_time": 5.0}),
        ("  {exec_time=5}  ", {"exec_time": 5.0}),
        ("/path/to/prog   {exec_time=5} -- why", {"exec_time": 5.0}),
        ("sim", {"exec_time": 10.0}),
        ("sim   ", {"exec_time": 10.0}),
        ("", {"exec_time": 10.0}),
        ("sim {}", {"exec_time": 10.0}),
        ("sim {io=0}", {"io": False}),
        ("sim {io=false}", {"io": False}),
        ("sim {io=1.0}", {"io": True}),
        ("sim {exit_code=3.0}", {"exit_code": 3}),
        ("sim {exec_time=0}", {"exec_time": 0.0}),
        ("sim {io_sensivity=0.5}", {"io_sensitivity": 0.5}),
        ("sim {io_sensitivity=0}", {"io_sensitivity": 0.0}),
        ("sim {io_sensitivity=1}", {"io_sensitivity": 1.0}),
        ("sim {fail_at=0}", {"fail_at": 0.0}),
        ("sim {exit_code=255, fail_exit_code=0}", {"exit_code": 255, "fail_exit_code": 0}),
        ("sim {exec_time=nil}", {"exec_time": 10.0}),
        ("sim {['exec_time']=7}", {"exec_time": 7.0}),
        ("sleep 10", {"exec_time": 10.0}),
        ("sleep 1.5", {"exec_time": 1.5}),
        ("sleep .5", {"exec_time": 0.5}),
        ("sleep 1e2", {"exec_time": 100.0}),
        ("sleep 2s", {"exec_time": 2.0}),
        ("sleep 2m", {"exec_time": 120.0}),
        ("sleep 1.5h", {"exec_time": 5400.0}),
        ("sleep 1d", {"exec_time": 86400.0}),
        ("sleep 1m 30", {"exec_time": 90.0}),
        ("sleep infinity", {"exec_time": math.inf}),
        ("sleep 5 INF", {"exec_time": math.inf}),
        ("sleep 1e400", {"exec_time": math.inf}),
        ("/bin/sleep  1h 1m 1s", {"exec_time": 3661.0}),
        ("sleep", {"exec_time": 10.0}),
        ("sleep {exec_time=3}", {"exec_time": 3.0}),
        ("mysleep {exec_time=3}", {"exec_time": 3.0}),
    ],
)
def test_commands(command: str, fields: dict[str, object]) -> None:
    spec = parse_command(command)
    for name, value in fields.items():
        assert getattr(spec, name) == value, name
        assert type(getattr(spec, name)) is type(value), name


def test_default_exec_time() -> None:
    assert parse_command("sim", default_exec_time=3.5) == JobSpec(exec_time=3.5)
    assert parse_command("sim {io=1}", 7).exec_time == 7.0
    assert parse_command("sim {exec_time=1}", 7).exec_time == 1.0


def test_unknown_keys_are_kept() -> None:
    spec = parse_command("sim {exec_time=1, io_model='linear', 42, weights={1, 2}}")
    assert dict(spec.args) == {
        "exec_time": 1, "io_model": "linear", 1: 42, "weights": {1: 1, 2: 2}
    }


def test_negative_zero_is_zero_in_the_spec() -> None:
    spec = parse_command("sim {exec_time=-0.0, io_sensitivity=-0.0, fail_at=- 0.0, io_workload=-0}")
    for value in (spec.exec_time, spec.io_sensitivity, spec.fail_at, spec.io_workload):
        assert value == 0.0 and math.copysign(1, value) == 1  # type: ignore[arg-type]
    assert math.copysign(1, spec.args["exec_time"]) == -1  # args keep Lua's value


def test_sleep_without_table_has_no_args() -> None:
    assert parse_command("sleep 3") == JobSpec(exec_time=3.0)


@pytest.mark.parametrize(
    ("command", "message", "column"),
    [
        ("sim {exec_time=-1}", "exec_time must be a finite number >= 0, but is -1", 16),
        ("sim {exec_time='5'}", "exec_time must be a finite number >= 0, but is the string", 16),
        ("sim {exec_time=1e400}", "exec_time must be a finite number >= 0, but is inf", 16),
        ("sim {exec_time=true}", "exec_time must be a finite number >= 0, but is true", 16),
        ("sim {exec_time={}}", "but is a table", 16),
        ("sim {exit_code=256}", "exit_code must be an integer from 0 to 255", 16),
        ("sim {exit_code=-1}", "exit_code must be an integer from 0 to 255", 16),
        ("sim {exit_code=1.5}", "exit_code must be an integer from 0 to 255", 16),
        ("sim {fail_exit_code=300}", "fail_exit_code must be an integer from 0 to 255", 21),
        ("sim {io=2}", "io must be true or false (or 1 or 0)", 9),
        ("sim {io='yes'}", "io must be true or false", 9),
        ("sim {io_workload=-0.5}", "io_workload must be a finite number >= 0", 18),
        ("sim {io_sensitivity=1.5}", "io_sensitivity must be a number from 0 to 1", 21),
        ("sim {io_sensivity=-1}", "io_sensivity must be a number from 0 to 1", 19),
        ("sim {io_sensitivity=1, io_sensivity=1}", "not both", 37),
        ("sim {io_target=3}", "io_target must be a string", 16),
        ("sim {fail_at=-5}", "fail_at must be a finite number >= 0", 14),
        ("sim {checkpoint_exit=1}", "checkpoint_exit must be true or false", 22),
        ("sim {exec_time=1} extra", "after the table", 19),
        ("sim exec_time=1", "expected a Lua table constructor", 5),
        ("sim 120", "expected a Lua table constructor", 5),
        ("sim {x=y}", "found name 'y'", 8),
        ("sim{exec_time=1}", "put a space before the table", 1),
        ("sleep x", "sleep: invalid time interval 'x'", 7),
        ("sleep 5 -1", "sleep: invalid time interval '-1'", 9),
        ("sleep 5x", "sleep: invalid time interval '5x'", 7),
    ],
)
def test_command_errors(command: str, message: str, column: int) -> None:
    with pytest.raises(SpecError) as caught:
        parse_command(command)
    assert message in str(caught.value)
    assert f"column {column}" in str(caught.value)
    assert caught.value.position == column - 1


KNOWN = st.fixed_dictionaries(
    {},
    optional={
        "exec_time": st.floats(0, 1e9) | st.integers(0, 10**9),
        "exit_code": st.integers(0, 255),
        "io": st.booleans() | st.sampled_from([0, 1]),
        "io_workload": st.floats(0, 1e6),
        "io_sensitivity": st.floats(0, 1),
        "io_target": st.text(max_size=10),
        "fail_at": st.floats(0, 1e9),
        "fail_exit_code": st.integers(0, 255),
        "checkpoint_exit": st.booleans(),
    },
)


@given(KNOWN, st.dictionaries(st.from_regex(r"[a-z]{3,6}", fullmatch=True), VALUES, max_size=3),
       st.randoms(use_true_random=False))
def test_generated_commands(known, extra, rnd) -> None:
    table = {**extra, **known}
    spec = parse_command("sim " + Writer(rnd).document(table))
    assert canon(plain(spec.args)) == canon(table)
    for name, value in known.items():
        assert getattr(spec, name) == (float(value) if type(value) is int else value)
    assert spec.exec_time == known.get("exec_time", 10.0)


@given(
    st.sampled_from(["exec_time", "exit_code", "io", "io_workload", "io_sensitivity",
                     "io_sensivity", "io_target", "fail_at", "fail_exit_code", "checkpoint_exit"]),
    VALUES | st.sampled_from([math.inf, -math.inf, -0.0, 2**63 - 1, -(2**63), 0.5, 255.0, 256]),
    st.randoms(use_true_random=False),
)
def test_known_keys_with_any_value(key, value, rnd) -> None:
    """A known key with a value of any type or range gives a JobSpec or a SpecError."""
    command = "sim " + Writer(rnd).document({key: value})
    try:
        spec = parse_command(command)
    except SpecError as exc:
        assert key in str(exc) and exc.position > 4
    else:
        name = "io_sensitivity" if key == "io_sensivity" else key
        assert getattr(spec, name) == (float(value) if type(value) is int else value)


@given(st.lists(st.tuples(st.floats(0, 1e6), st.sampled_from(["", "s", "m", "h", "d"])),
                min_size=1, max_size=4))
def test_sleep_sums_durations(parts) -> None:
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
    command = "sleep " + " ".join(f"{n!r}{u}" for n, u in parts)
    assert parse_command(command).exec_time == pytest.approx(
        sum(n * unit[u] for n, u in parts), rel=1e-12
    )


@pytest.mark.parametrize(("text", "value"), [
    ("10", 10.0), ("-2.5", -2.5), ("+.5", 0.5), (" 1e3 ", 1000.0), ("7.", 7.0),
    ("1_0", None), ("nan", None), ("inf", None), ("0x10", None), ("١", None), ("", None),
    ("--1", None), ("1e", None),
])
def test_decimal_is_plain_ascii_decimal(text: str, value: float | None) -> None:
    assert decimal(text) == value
