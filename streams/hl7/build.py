"""Building HL7 v2 messages: ACK/NAK for MLLP senders and IHE PCD-04 alert reports.

Both are built by hand from escaped fields (hl7apy has no ORU_R40 structure and costs about
15 ms per message, too slow for an ACK per message at 2,000 messages/s); the tests parse every
built message back with hl7apy to check its structure.

ACK layout (v2.5+ ERR, reason also in MSA-3 for v2.3/2.4 receivers)::

    MSH|^~\\&|IOHWATCH|IOHWATCH|<MSH-3 of the original>|<MSH-4>|<now>||ACK^<trigger>^ACK|<id>|P|<version>
    MSA|AA|<original MSH-10>[|<reason>]
    ERR|||<code>^<text>^HL70357|E||||<reason>            (AE/AR only)
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

ENC = "^~\\&"
APP = "IOHWATCH"

# HL7 table 0357 (message error condition codes) used in ERR-3.
ERR_SEGMENT_SEQUENCE = ("100", "Segment sequence error")
ERR_REQUIRED_MISSING = ("101", "Required field missing")
ERR_DATA_TYPE = ("102", "Data type error")
ERR_UNSUPPORTED_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_INTERNAL = ("207", "Application internal error")


def escape(text: str) -> str:
    """Escape the HL7 delimiters (default encoding characters) in a field value."""
    if not any(c in text for c in "|^~\\&\r\n"):
        return text
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("~", "\\R\\").replace("&", "\\T\\").replace("\r\n", "\\.br\\")
    return out.replace("\n", "\\.br\\").replace("\r", "\\.br\\")


def ts(t_ns: int | None = None, fraction: bool = True) -> str:
    """HL7 DTM in UTC with explicit offset: YYYYMMDDHHMMSS[.ffff]+0000."""
    t_ns = time.time_ns() if t_ns is None else t_ns
    dt = datetime.fromtimestamp(t_ns / 1e9, tz=timezone.utc)
    base = dt.strftime("%Y%m%d%H%M%S")
    if fraction:
        base += f".{(t_ns // 100_000) % 10_000:04d}"
    return base + "+0000"


def ack(code: str, control_id: str, *, trigger: str = "", sending_app: str = "", sending_facility: str = "",
        version: str = "", reason: str = "", error: tuple[str, str] = ERR_INTERNAL) -> bytes:
    """ACK message (``code`` AA, AE or AR) answering ``control_id``; ERR segment unless AA."""
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"acknowledgement code must be AA, AE or AR, got {code!r}")
    version = version if version[:2] == "2." and len(version) <= 8 else "2.6"
    msh = "|".join(["MSH", ENC, APP, APP, escape(sending_app), escape(sending_facility), ts(), "",
                    f"ACK^{escape(trigger)}^ACK" if trigger else "ACK", escape(f"ACK{control_id}"[:199]),
                    "P", escape(version)])
    msa = f"MSA|{code}|{escape(control_id)}"
    segs = [msh]
    if code == "AA":
        segs.append(msa)
    else:
        r = escape(reason[:500])
        segs.append(f"{msa}|{r}")
        segs.append(f"ERR|||{error[0]}^{error[1]}^HL70357|E||||{r}")
    return ("\r".join(segs) + "\r").encode()


def ack_code(message: bytes) -> tuple[str, str]:
    """(MSA-1, MSA-2) of an ACK, ('', '') when there is none."""
    for line in message.replace(b"\n", b"\r").split(b"\r"):
        if line.startswith(b"MSA"):
            parts = line.decode("utf-8", "replace").split("|")
            return (parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "")
    return "", ""
