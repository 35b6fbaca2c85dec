"""`access add|remove|list` (who may read the dashboard) and `token executor` (a JWT bound to one consumer).

On Supabase anyone can sign up with the public anon key and so become `authenticated`; the dashboard views
show rows only to the people in `dashboard_members` (migration 0016). An executor token carries a
`consumer` claim, and the queue functions refuse to act for any other consumer with it.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated
from uuid import UUID

import psycopg
import typer
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.table import Table

from controller.cli.base import actor, connect, console, fail

logger = logging.getLogger(__name__)

access_app = typer.Typer(no_args_is_help=True, help="Who may read the dashboard views (signing up is not enough).")
token_app = typer.Typer(no_args_is_help=True, help="Mint JWTs for the Hummingbot side.")

CONSUMER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}")
MIN_SECRET_CHARS = 32  # PostgREST refuses a shorter HS256 secret


def register(app: typer.Typer) -> None:
    app.add_typer(access_app, name="access")
    app.add_typer(token_app, name="token")


# --- dashboard members --------------------------------------------------------------------------------


def _require_members_table(conn: psycopg.Connection) -> None:
    if conn.execute("select to_regclass('public.dashboard_members')").fetchone()[0] is None:
        raise fail("the database has no dashboard_members table yet: run python -m controller migrate")


def _resolve(conn: psycopg.Connection, who: str) -> tuple[UUID, str | None]:
    """A user id and the email known for it, from a UUID or from an email of Supabase's auth.users."""
    has_users = conn.execute("select to_regclass('auth.users')").fetchone()[0] is not None
    try:
        user_id = UUID(who)
    except ValueError:
        user_id = None
    if user_id is not None:
        row = conn.execute("select email from auth.users where id = %s", [user_id]).fetchone() if has_users else None
        return user_id, row[0] if row else None
    if "@" not in who:
        raise fail(f"expected an email or a user UUID, got {who!r}")
    if not has_users:
        raise fail(f"this database has no auth.users table (it is not Supabase), so {who} cannot be looked up: "
                   "give the user's UUID (the `sub` claim of their JWT) instead")
    rows = conn.execute("select id, email from auth.users where lower(email) = lower(%s)", [who]).fetchall()
    if not rows:
        raise fail(f"no Supabase user has the email {who}: invite them first (Authentication -> Users -> "
                   "Invite user), then add them")
    return rows[0][0], rows[0][1]


@access_app.command("add")
def access_add(ctx: typer.Context, who: Annotated[str, typer.Argument(help="email or user UUID")]) -> None:
    """Let a Supabase user read the dashboard views."""
    with connect(ctx.obj) as conn:
        _require_members_table(conn)
        user_id, email = _resolve(conn, who)
        added = conn.execute("insert into dashboard_members (user_id, email, added_by) values (%s, %s, %s)"
                             " on conflict (user_id) do nothing returning user_id",
                             [user_id, email, actor()]).fetchone()
        if added is None:
            by, at = conn.execute("select added_by, added_at from dashboard_members where user_id = %s",
                                  [user_id]).fetchone()
            console.print(f"{user_id} ({email or 'no email known'}) is already a member:"
                          f" added by {by} at {at:%Y-%m-%d %H:%M:%S}")
            return
    logger.info("dashboard member added", extra={"user_id": str(user_id), "by": actor()})
    console.print(f"added {user_id} ({email or 'no email known'}): they now see the dashboard views")


@access_app.command("remove")
def access_remove(ctx: typer.Context, who: Annotated[str, typer.Argument(help="email or user UUID")]) -> None:
    """Take a user's dashboard access away (their Supabase account stays)."""
    with connect(ctx.obj) as conn:
        _require_members_table(conn)
        # an email recorded at `add` still removes the member when auth.users no longer has it
        row = conn.execute("select user_id from dashboard_members where lower(email) = lower(%s)", [who]).fetchone()
        user_id = row[0] if row else _resolve(conn, who)[0]
        removed = conn.execute("delete from dashboard_members where user_id = %s returning user_id",
                               [user_id]).fetchone()
    if removed is None:
        raise fail(f"{who} is not a dashboard member", code=1)
    logger.info("dashboard member removed", extra={"user_id": str(user_id), "by": actor()})
    console.print(f"removed {user_id}: the dashboard views now show them no rows")


@access_app.command("list")
def access_list(ctx: typer.Context) -> None:
    """Everyone who may read the dashboard views."""
    with connect(ctx.obj) as conn:
        _require_members_table(conn)
        rows = conn.execute("select user_id, email, added_by, added_at from dashboard_members"
                            " order by added_at, user_id").fetchall()
    if not rows:
        console.print("no dashboard members: the dashboard views show signed-in users no rows")
        return
    table = Table(title="dashboard members")
    for column in ("user id", "email", "added by", "added at"):
        table.add_column(column)
    for user_id, email, by, at in rows:
        table.add_row(str(user_id), email or "", by, f"{at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


# --- executor tokens ----------------------------------------------------------------------------------


class JwtSecrets(BaseSettings):
    """The project's JWT secret: only from the environment or the git-ignored `.env`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_file=".env", case_sensitive=True)

    supabase: SecretStr | None = Field(None, validation_alias="SUPABASE_JWT_SECRET")
    postgrest: SecretStr | None = Field(None, validation_alias="PGRST_JWT_SECRET")

    def pick(self) -> tuple[str, str]:
        """(variable name, secret): Supabase's when set, else the selfhost PostgREST's."""
        for name, value in (("SUPABASE_JWT_SECRET", self.supabase), ("PGRST_JWT_SECRET", self.postgrest)):
            if value is not None and value.get_secret_value().strip():
                return name, value.get_secret_value()
        raise ValueError("neither SUPABASE_JWT_SECRET nor PGRST_JWT_SECRET is set (environment or .env): "
                         "Supabase shows it under Settings -> API -> JWT secret")


def mint_executor_token(secret: str, consumer: str, days: int, now: datetime) -> str:
    """An HS256 JWT for PostgREST: role executor, bound to `consumer`, valid `days` days from `now`."""
    if not CONSUMER.fullmatch(consumer):
        raise ValueError(f"consumer must be 1-63 letters, digits or _.:- (starting with a letter or digit), "
                         f"got {consumer!r}")
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if len(secret) < MIN_SECRET_CHARS or "CHANGE-ME" in secret:
        raise ValueError(f"the JWT secret must be at least {MIN_SECRET_CHARS} characters and not the "
                         ".env.example placeholder")
    import jwt  # here: PyJWT pulls in cryptography, which no other command needs

    issued = int(now.timestamp())
    return jwt.encode({"role": "executor", "consumer": consumer, "iat": issued,
                       "exp": issued + int(timedelta(days=days).total_seconds())}, secret, algorithm="HS256")


@token_app.command("executor")
def token_executor(
    consumer: Annotated[str, typer.Option(help="the consumer name in the bot's config (conf_signal_executor.yml)")],
    days: Annotated[int, typer.Option(min=1, max=3650, help="days until the token expires")] = 90,
) -> None:
    """Print an executor JWT bound to one consumer, once, to stdout (put it in EXECUTOR_JWT)."""
    try:
        variable, secret = JwtSecrets().pick()
        now = datetime.now(UTC)
        token = mint_executor_token(secret, consumer, days, now)
    except ValueError as exc:
        raise fail(str(exc)) from None
    expires = now + timedelta(days=days)
    # Only the token goes to stdout (EXECUTOR_JWT=$(python -m controller token executor ...)); what
    # goes to stderr and the log never contains it.
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    logger.info("executor token minted", extra={"consumer": consumer, "expires": f"{expires:%Y-%m-%dT%H:%M:%SZ}",
                                                "secret_from": variable})
    print(f"executor token for consumer {consumer!r}, signed with {variable}, expires {expires:%Y-%m-%d %H:%M} UTC;"
          " it is not stored anywhere: put it in EXECUTOR_JWT now", file=sys.stderr)
