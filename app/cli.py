"""Flask CLI commands for operators."""
import click
from flask import current_app

from app.auth.passwords import password_problem
from app.services import probe_jobs, users


@click.command("create-admin")
@click.option("--username", default=None, help="Defaults to ADMIN_USERNAME.")
@click.option("--email", default=None, help="Defaults to ADMIN_EMAIL.")
@click.option("--password", default=None, help="Defaults to ADMIN_PASSWORD; prompted when unset.")
def create_admin(username, email, password):
    """Create an admin user (role admin, tier Enterprise) unless one with that name/email exists."""
    cfg = current_app.config
    username = username or cfg.get("ADMIN_USERNAME")
    email = email or cfg.get("ADMIN_EMAIL")
    password = password or cfg.get("ADMIN_PASSWORD")
    if not username or not email:
        raise click.UsageError("give --username and --email (or set ADMIN_USERNAME and ADMIN_EMAIL)")
    if not password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password, cfg["PASSWORD_MIN_LENGTH"], cfg["PASSWORD_MAX_LENGTH"])
    if problem:
        raise click.UsageError(f"password: {problem}")
    created = users.ensure_admin(username, email, password)
    click.echo(f"admin {username!r} created" if created else f"a user {username!r} or {email!r} exists; unchanged")


@click.command("ensure-admin")
def ensure_admin_from_env():
    """Create the admin from ADMIN_* when all three are set and it does not exist (start.sh)."""
    cfg = current_app.config
    if not (cfg.get("ADMIN_USERNAME") and cfg.get("ADMIN_EMAIL") and cfg.get("ADMIN_PASSWORD")):
        click.echo("ADMIN_USERNAME/ADMIN_EMAIL/ADMIN_PASSWORD not all set; no admin created")
        return
    problem = password_problem(cfg["ADMIN_PASSWORD"], cfg["PASSWORD_MIN_LENGTH"], cfg["PASSWORD_MAX_LENGTH"])
    if problem:
        raise click.UsageError(f"ADMIN_PASSWORD: {problem}")
    created = users.ensure_admin(cfg["ADMIN_USERNAME"], cfg["ADMIN_EMAIL"], cfg["ADMIN_PASSWORD"])
    click.echo("admin created" if created else "admin already exists")


@click.command("mark-stale-jobs")
def mark_stale_jobs():
    """End running jobs past their deadline as failed (start.sh; jobs of live instances are left alone)."""
    click.echo(f"{probe_jobs.mark_stale_jobs()} stale job(s) past their deadline marked timeout")


def init_app(app):
    for command in (create_admin, ensure_admin_from_env, mark_stale_jobs):
        app.cli.add_command(command)
