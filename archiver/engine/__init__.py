"""Archival engine: pure SQLAlchemy Core, no Flask.

It takes SQLAlchemy engines for the source and archive databases, a policy
value and a clock, and moves, purges and restores rows. The archive-side
tables it owns are declared in :mod:`archiver.engine.schema`.
"""
