"""Hot-path HL7 v2 parser: plain string splitting, no object per field.

``parse(raw)`` turns one message (bytes, with or without MLLP framing) into ``ParsedHL7``:
the encoding characters read from MSH-1/MSH-2, and every segment as a list of raw field
strings indexed like the standard (``seg[3]`` is OBX-3; for MSH, ``seg[1]`` is the field
separator and ``seg[2]`` the encoding characters, so ``seg[9]`` is MSH-9). Components,
repetitions and escape sequences are resolved only when a caller asks (``comp``, ``reps``,
``unescape``), so unused fields cost nothing.

Accepted: segment terminators CR, LF or CRLF; any encoding characters (MSH-2, 4 or 5 chars
as in v2.7+); versions 2.3 to 2.8 (the parser does not depend on the version); Z segments
(kept, ignored by ``normalise``). A line that is not a segment (no 3-character id) is kept in
``bad_lines`` so the caller can dead-letter it; a message without a usable MSH raises
``HL7ParseError``. This module never raises anything else for any input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SEG_ID = re.compile(r"[A-Z][A-Z0-9]{2}\Z")
_FRAMING = str.maketrans("", "", "\x0b\x1c")


class HL7ParseError(ValueError):
    """The bytes are not an HL7 v2 message; the message says why."""


@dataclass(slots=True)
class ParsedHL7:
    field_sep: str
    comp_sep: str
    rep_sep: str
    esc: str
    sub_sep: str
    segments: list[list[str]]  # raw fields per segment, seg[0] = segment id
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, text)

    # --- access -------------------------------------------------------------------------------
    @property
    def msh(self) -> list[str]:
        return self.segments[0]

    def get(self, seg: list[str], n: int) -> str:
        """Raw field n of a segment ('' when absent)."""
        return seg[n] if n < len(seg) else ""

    def first(self, seg_id: str) -> list[str] | None:
        for seg in self.segments:
            if seg[0] == seg_id:
                return seg
        return None

    def all(self, seg_id: str) -> list[list[str]]:
        return [seg for seg in self.segments if seg[0] == seg_id]

    def reps(self, value: str) -> list[str]:
        """Repetitions of a raw field."""
        return value.split(self.rep_sep) if self.rep_sep in value else [value]

    def comp(self, value: str, i: int = 1) -> str:
        """Component i (1-based) of a raw field or repetition, unescaped."""
        if self.comp_sep not in value:
            return self.unescape(value) if i == 1 else ""
        parts = value.split(self.comp_sep)
        return self.unescape(parts[i - 1]) if i <= len(parts) else ""

    def comps(self, value: str) -> list[str]:
        """All components of a raw field, unescaped (subcomponents left joined)."""
        return [self.unescape(p) for p in value.split(self.comp_sep)]

    def parts(self, seg: list[str], n: int, k: int) -> list[str]:
        """The first k components of the first repetition of field n, unescaped, padded with ''."""
        value = seg[n] if n < len(seg) else ""
        if not value:
            return [""] * k
        rep = self.rep_sep
        if rep in value:
            value = value.split(rep, 1)[0]
        out = value.split(self.comp_sep, k)[:k]
        if self.esc in value:
            out = [self.unescape(c) for c in out]
        if len(out) < k:
            out += [""] * (k - len(out))
        return out

    def field_text(self, seg: list[str], n: int, i: int = 1) -> str:
        """Component i of the first repetition of field n, unescaped."""
        value = seg[n] if n < len(seg) else ""
        if not value:
            return ""
        if self.rep_sep in value:
            value = value.split(self.rep_sep, 1)[0]
        return self.comp(value, i)

    def msh_field(self, n: int, i: int = 1) -> str:
        return self.field_text(self.segments[0], n, i)

    @property
    def control_id(self) -> str:
        return self.msh_field(10)

    @property
    def message_type(self) -> tuple[str, str]:
        """(MSH-9.1, MSH-9.2), e.g. ('ORU', 'R01')."""
        return self.msh_field(9, 1), self.msh_field(9, 2)

    @property
    def version(self) -> str:
        return self.msh_field(12)

    # --- escapes ------------------------------------------------------------------------------
    def unescape(self, s: str) -> str:
        """Resolve HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\ \\.br\\)."""
        e = self.esc
        if not e or e not in s:
            return s
        out: list[str] = []
        i, n = 0, len(s)
        while i < n:
            ch = s[i]
            if ch != e:
                out.append(ch)
                i += 1
                continue
            j = s.find(e, i + 1)
            if j < 0:  # unterminated: keep literally
                out.append(s[i:])
                break
            code = s[i + 1:j]
            out.append(self._escape_value(code, s[i:j + 1]))
            i = j + 1
        return "".join(out)

    def _escape_value(self, code: str, literal: str) -> str:
        if code == "F":
            return self.field_sep
        if code == "S":
            return self.comp_sep
        if code == "T":
            return self.sub_sep
        if code == "R":
            return self.rep_sep
        if code == "E":
            return self.esc
        if code == ".br":
            return "\n"
        if code in ("H", "N") or code.startswith((".sp", ".in", ".ti", ".sk", ".fi", ".nf", ".ce")):
            return ""
        if code[:1] == "X" and len(code) > 1:
            try:
                return bytes.fromhex(code[1:]).decode("latin-1")
            except ValueError:
                return literal
        return literal  # unknown escape (\Z..\, \C..\, \M..\): keep as sent


def decode_text(raw: bytes) -> str:
    """Bytes of a message as text: UTF-8, else Latin-1 (which cannot fail)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse(raw: bytes | str, only: frozenset[str] | None = None) -> ParsedHL7:
    """Parse one HL7 v2 message; raise HL7ParseError when it has no usable MSH.

    ``only``: split just these segments (plus MSH), e.g. ``{"PV1"}`` for the ingest hot path.
    """
    text = decode_text(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else raw
    if isinstance(text, memoryview):  # pragma: no cover - decode_text handles bytes-likes
        text = decode_text(bytes(text))
    if "\x0b" in text or "\x1c" in text:
        text = text.translate(_FRAMING)
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    lines = text.split("\r")
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        raise HL7ParseError("empty message")
    head = lines[start].lstrip()
    if not head.startswith("MSH"):
        raise HL7ParseError(f"message does not start with MSH (starts with {head[:12]!r})")
    if len(head) < 8:
        raise HL7ParseError(f"MSH too short to hold the encoding characters: {head!r}")
    fs = head[3]
    if fs.isalnum() or fs.isspace():
        raise HL7ParseError(f"MSH-1 field separator {fs!r} is not a separator character")
    end = head.find(fs, 4)
    enc = head[4:end] if end > 0 else head[4:]
    if len(enc) < 4 or len(enc) > 5:
        raise HL7ParseError(f"MSH-2 encoding characters {enc!r} must be 4 or 5 characters")
    comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
    seps = {fs, comp, rep, esc, sub}
    if len(seps) != 5 or any(c.isalnum() or c.isspace() for c in seps):
        raise HL7ParseError(f"MSH-1/MSH-2 separators {fs + enc!r} are not 5 distinct punctuation characters")

    msh = head.split(fs)
    msh.insert(1, fs)  # MSH-1 is the separator itself; now msh[n] is MSH-n
    segments: list[list[str]] = [msh]
    bad: list[tuple[int, str]] = []
    for lineno in range(start + 1, len(lines)):
        line = lines[lineno]
        if not line:
            continue
        seg_id = line[:3]
        if not _SEG_ID.match(seg_id) or (len(line) > 3 and line[3] != fs):
            if line.strip():
                bad.append((lineno + 1, line[:200]))
            continue
        if seg_id == "MSH":
            # A second MSH: the caller gave two messages as one; keep the first only.
            bad.append((lineno + 1, "second MSH segment (several messages in one frame)"))
            break
        if only is None or seg_id in only:
            segments.append(line.split(fs))
    return ParsedHL7(fs, comp, rep, esc, sub, segments, bad)


def split_messages(text: bytes) -> list[bytes]:
    """Split a file or payload holding several messages at each MSH.

    MLLP-framed input (it holds a start block 0x0B) is unframed first and bytes outside frames
    are dropped; plain input is split at every ``MSH`` that starts a line. Each message keeps its
    segments, terminated by CR.
    """
    data = bytes(text)
    if b"\x0b" in data:
        from streams.mllp import MLLPFramer

        framer = MLLPFramer(max_frame_bytes=max(len(data), 16))
        bodies = [ev.data for ev in framer.feed(data) if ev.kind == "frame"]
    else:
        bodies = [data]
    out: list[bytes] = []
    for body in bodies:
        # a message starts at "MSH" at the beginning of the data or right after a line break
        starts = [m.start() for m in re.finditer(rb"(?:^|(?<=[\r\n]))MSH", body)]
        for a, b in zip(starts, starts[1:] + [len(body)]):
            out.append(body[a:b].strip(b"\r\n") + b"\r")
    return out
