"""API_TOKENS: who each bearer token is (a name) and whether it is an admin.

An entry is `token` (an admin without a name: the form of every release before names),
`name:token` (a user: it sees only the workflows it created) or `admin:name:token` (a named
admin). Names are unique, and so are tokens; a malformed entry is refused at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class ApiToken:
    token: str
    name: str | None  # None: a plain-form token
    admin: bool


def parse_api_tokens(raw: str) -> list[ApiToken]:
    """The comma-separated entries of API_TOKENS; ValueError naming the entry that is wrong
    (by position, never by its token)."""
    tokens: list[ApiToken] = []
    for position, entry in enumerate((e.strip() for e in raw.split(",") if e.strip()), 1):
        tokens.append(_parse_entry(entry, position))
    names = [token.name for token in tokens if token.name is not None]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"API_TOKENS names must be unique: {', '.join(duplicates)} repeated")
    secrets = [token.token for token in tokens]
    if len(set(secrets)) != len(secrets):
        raise ValueError("API_TOKENS holds the same token twice; give each name its own token")
    return tokens


def _parse_entry(entry: str, position: int) -> ApiToken:
    parts = [part.strip() for part in entry.split(":")]
    where = f"API_TOKENS entry {position}"
    if len(parts) == 1:
        return ApiToken(token=parts[0], name=None, admin=True)
    if len(parts) == 2:
        name, token = parts
        if name == ADMIN_ROLE:
            raise ValueError(
                f"{where} is 'admin:<token>': write 'admin:<name>:<token>' for a named admin, "
                "or the token alone for an unnamed one"
            )
        admin = False
    elif len(parts) == 3:
        role, name, token = parts
        if role != ADMIN_ROLE:
            raise ValueError(
                f"{where} has three parts but its role is not 'admin': write "
                "'admin:<name>:<token>', or '<name>:<token>' for a user"
            )
        admin = True
    else:
        raise ValueError(
            f"{where} has {len(parts)} ':'-separated parts: write '<token>', "
            "'<name>:<token>' or 'admin:<name>:<token>' (a token holds no ':')"
        )
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{where}: its name must be 1 to 64 letters, digits, '.', '_' or '-'")
    if not token:
        raise ValueError(f"{where} ({name}) has an empty token")
    return ApiToken(token=token, name=name, admin=admin)
