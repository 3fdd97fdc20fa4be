"""Fault matrix: the real stack on loopback, one injected fault per case."""
