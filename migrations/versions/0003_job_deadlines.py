"""job deadlines: probe_jobs.deadline_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 02:45:00

Every job gets a deadline (its probe's bound plus a margin); a running server ends overdue
running jobs as failed. Jobs already running when this migration runs get created_at + 300 s,
the old PROBE_STALE_SECONDS default after which a running row stopped counting as running.
"""
from datetime import UTC, timedelta

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

INDEX = 'ix_probe_jobs_running_user_deadline'
RUNNING = sa.text("status = 'running'")
LEGACY_STALE_SECONDS = 300


def _backfill_running():
    bind = op.get_bind()
    jobs = sa.table('probe_jobs', sa.column('id', sa.BigInteger), sa.column('status', sa.String),
                    sa.column('created_at', sa.DateTime(timezone=True)),
                    sa.column('deadline_at', sa.DateTime(timezone=True)))
    rows = bind.execute(sa.select(jobs.c.id, jobs.c.created_at).where(jobs.c.status == 'running')).all()
    for job_id, created_at in rows:
        created_at = created_at.replace(tzinfo=UTC) if created_at.tzinfo is None else created_at.astimezone(UTC)
        bind.execute(sa.update(jobs).where(jobs.c.id == job_id)
                     .values(deadline_at=created_at + timedelta(seconds=LEGACY_STALE_SECONDS)))


def upgrade():
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True))
    _backfill_running()
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        batch_op.create_index(INDEX, ['user_id', 'deadline_at'], unique=False,
                              postgresql_where=RUNNING, sqlite_where=RUNNING)


def downgrade():
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        batch_op.drop_index(INDEX, postgresql_where=RUNNING, sqlite_where=RUNNING)
        batch_op.drop_column('deadline_at')
