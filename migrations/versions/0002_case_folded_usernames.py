"""case-folded usernames: a unique index on lower(username)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 02:30:00

Usernames are unique regardless of case, enforced by the database (so parallel registrations
of ``Dupe`` and ``dupe`` cannot both commit). A database that already holds usernames equal
up to case cannot take the index: the migration refuses, naming them, and the operator renames
all but one (see docs/configuration.md, "Usernames").
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

INDEX = 'uq_users_username_lower'


def _refuse_case_duplicates():
    rows = op.get_bind().execute(sa.text(
        "SELECT lower(username) AS folded, count(*) AS n FROM users "
        "GROUP BY lower(username) HAVING count(*) > 1 ORDER BY folded")).all()
    if rows:
        names = ", ".join(f"{row.folded!r} ({row.n} accounts)" for row in rows[:20])
        raise RuntimeError(
            "migration 0002 refused: usernames that differ only by case exist: " + names
            + ". Rename all but one of each (UPDATE users SET username = ... WHERE id = ...), then migrate again.")


def upgrade():
    _refuse_case_duplicates()
    op.create_index(INDEX, 'users', [sa.text('lower(username)')], unique=True)


def downgrade():
    op.drop_index(INDEX, table_name='users')
