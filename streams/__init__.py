"""I/O and signal code with no model in it: contracts, codecs, readers, signal math, broker."""
