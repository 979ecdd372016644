"""Optional strict validation of one message against the HL7 v2 standard, with ``hl7apy``.

Slow (tens of ms per message: hl7apy builds an object per field), so it is never on the ingest
hot path; ``iohwatch hl7 parse --strict`` uses it to check a feed, and the tests use it to check
that the sample messages and built messages are standard-conformant.
"""

from __future__ import annotations

from streams.hl7.fast import split_messages


def validate(raw: bytes) -> list[str]:
    """Problems hl7apy finds in the message (structure for its version, data types); [] if valid."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.parser import parse_message

    messages = split_messages(raw)
    if len(messages) != 1:
        return [f"expected one message, found {len(messages)}"]
    text = messages[0].decode("utf-8", "replace")
    try:
        msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        msg.validate()
    except Exception as exc:  # hl7apy raises many exception types; each is a finding here
        return [f"{type(exc).__name__}: {exc}"]
    return []
