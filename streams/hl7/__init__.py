"""HL7 v2 in and out: the hot-path parser (``fast``), the code table (``codes``), normalisation
into the project's records (``normalise``), message building (``build``) and the ingest
benchmark (``bench``)."""
