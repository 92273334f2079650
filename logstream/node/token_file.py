"""The cluster token on disk: read a node's -token-file, make one for `logstream run` (mode 0600,
kept across restarts), and the Guard a node's settings ask for."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

from logstream.errors import UserError
from logstream.node.auth import Guard, new_token, parse_token
from logstream.node.tls import NodeTls

logger = logging.getLogger(__name__)

TOKEN_FILE = "cluster.token"


class TokenFileError(UserError):
    """A -token-file that cannot be read or does not hold a token."""


def read_token(path: Path) -> str:
    """The token in `path`; TokenFileError naming the file when it cannot be read or is not a token."""
    try:
        return parse_token(Path(path).read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"-token-file {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    except ValueError as exc:
        raise TokenFileError(f"-token-file {path}: {exc}") from None


def ensure_token(path: Path) -> bool:
    """Make `path` hold a fresh token (owner-only) unless it holds one already; True when made."""
    if path.exists():
        read_token(path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(new_token() + "\n")
    return True


class GuardSettings(NodeTls, Protocol):
    """What `guard_for` reads of a node's settings (the roles' settings models have it)."""

    @property
    def token_file(self) -> Path | None: ...


def guard_for(settings: GuardSettings, role: str, warn: bool = True) -> Guard:
    """What this node requires of cluster peers; says once at start (with `warn`) when it requires nothing."""
    token = read_token(settings.token_file) if settings.token_file is not None else None
    guard = Guard(token, settings.tls_mode == "mutual")
    if guard.open and warn:
        logger.warning("no cluster token (-token-file) and no mutual TLS: anyone who reaches this %s's port "
                       "can steer it", role)
    return guard
