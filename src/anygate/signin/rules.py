"""Who may sign in to the console, and as what, from the ID token's claims (pure: settings and claims in).

    admin   in ``admin_groups`` (the ``groups_claim``), or matching ``admin_claims``
    team    admitted as a user (below) and carrying ``team_claim``: acts as that team's shared user record
    user    in ``user_groups``, or matching ``user_claims``, or anyone when ``allow_everyone``: acts as a user
            record of their own
    refused anyone else

A claim matches a rule when it equals one of the rule's values, or (a list claim) holds one of them. An
``email`` the issuer says is not verified (``email_verified: false``) matches nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from anygate.settings import OidcSettings

Role = Literal["admin", "team", "user"]


@dataclass(frozen=True, slots=True)
class Standing:
    """What a person signs in as: ``identity`` keys the user record (the issuer's subject, or the team),
    ``name`` names it when it is made."""

    role: Role
    identity: str
    name: str


def claim_values(claims: Mapping[str, Any], name: str) -> list[str]:
    """The claim's values as strings: a string is one, a list its strings (and numbers); absent is none."""
    if name == "email" and claims.get("email_verified") is False:
        return []
    value = claims.get(name)
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [str(value)]
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float) and not isinstance(v, bool) and v != ""]
    return []


def matches(claims: Mapping[str, Any], groups_claim: str, groups: list[str], rules: dict[str, list[str]]) -> bool:
    if groups and set(claim_values(claims, groups_claim)) & set(groups):
        return True
    return any(set(claim_values(claims, claim)) & set(values) for claim, values in rules.items())


def display_name(claims: Mapping[str, Any], user_claim: str) -> str:
    """How a person's user record is named: ``user_claim``, else ``name``, else the subject."""
    for name in (user_claim, "name", "preferred_username"):
        values = claim_values(claims, name)
        if values:
            return values[0][:200]
    return str(claims.get("sub", ""))[:200]


def standing_of(config: OidcSettings, claims: Mapping[str, Any]) -> Standing | None:
    """What this person signs in as, or None when the rules admit them as nothing."""
    subject = str(claims["sub"])
    name = display_name(claims, config.user_claim)
    if matches(claims, config.groups_claim, config.admin_groups, config.admin_claims):
        return Standing("admin", "sub:" + subject, name)
    admitted = config.allow_everyone or matches(claims, config.groups_claim, config.user_groups, config.user_claims)
    if not admitted:
        return None
    if config.team_claim is not None:
        teams = claim_values(claims, config.team_claim)
        if teams:
            return Standing("team", "team:" + teams[0], teams[0][:200])
    return Standing("user", "sub:" + subject, name)
