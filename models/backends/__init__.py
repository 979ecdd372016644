"""Inference backends behind ``models.runtime``; each module is imported only when chosen."""
