"""Fault matrix (issue 7): the real stack on loopback, one injected fault per case."""
