"""The one base class of errors a user can cause and fix; the CLI edge prints them as one line."""

from __future__ import annotations


class UserError(Exception):
    """A problem in what the user gave (a flag, a file, a port): library code raises a subclass
    naming the cause; `logstream.commands.main` prints it as one line and exits 2."""
