"""measurements and job states: measurements table; probe_jobs.started_at, location, measurement_id, error_code

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 03:30:00

Jobs now go queued -> running -> completed | failed | timeout; the partial indexes that served
"running" now cover queued and running jobs (both are in flight for the per-user cap and the sweep).
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")
ACTIVE = sa.text("status IN ('queued', 'running')")
STATUS_INDEX = 'ix_probe_jobs_status_running'
DEADLINE_INDEX = 'ix_probe_jobs_running_user_deadline'
FK = 'fk_probe_jobs_measurement_id_measurements'


def _swap_partial_indexes(batch_op, old, new):
    batch_op.drop_index(STATUS_INDEX, postgresql_where=old, sqlite_where=old)
    batch_op.drop_index(DEADLINE_INDEX, postgresql_where=old, sqlite_where=old)
    batch_op.create_index(STATUS_INDEX, ['status'], unique=False, postgresql_where=new, sqlite_where=new)
    batch_op.create_index(DEADLINE_INDEX, ['user_id', 'deadline_at'], unique=False,
                          postgresql_where=new, sqlite_where=new)


def upgrade():
    op.create_table(
        'measurements',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('target', sa.String(length=255), nullable=False),
        sa.Column('options', sa.JSON(), nullable=False),
        sa.Column('locations', sa.JSON(), nullable=False),
        sa.Column('limit', sa.Integer(), nullable=False),
        sa.Column('probes_count', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_measurements_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_measurements')),
    )
    with op.batch_alter_table('measurements', schema=None) as batch_op:
        batch_op.create_index('ix_measurements_user_id_created_at', ['user_id', 'created_at'], unique=False)
    sqlite = op.get_bind().dialect.name == 'sqlite'
    # SQLite: no constraint (adding one rebuilds the table); a measurement's rows go with its user's anyway.
    op.add_column('probe_jobs', sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('probe_jobs', sa.Column('location', sa.String(length=64), nullable=True))
    op.add_column('probe_jobs', sa.Column('measurement_id', sa.String(length=32), nullable=True))
    op.add_column('probe_jobs', sa.Column('error_code', sa.String(length=32), nullable=True))
    if not sqlite:
        op.create_foreign_key(FK, 'probe_jobs', 'measurements', ['measurement_id'], ['id'], ondelete='CASCADE')
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_probe_jobs_measurement_id', ['measurement_id'], unique=False)
        _swap_partial_indexes(batch_op, RUNNING, ACTIVE)


def downgrade():
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        _swap_partial_indexes(batch_op, ACTIVE, RUNNING)
        batch_op.drop_index('ix_probe_jobs_measurement_id')
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(FK, 'probe_jobs', type_='foreignkey')
    with op.batch_alter_table('probe_jobs', schema=None) as batch_op:
        batch_op.drop_column('error_code')
        batch_op.drop_column('measurement_id')
        batch_op.drop_column('location')
        batch_op.drop_column('started_at')
    with op.batch_alter_table('measurements', schema=None) as batch_op:
        batch_op.drop_index('ix_measurements_user_id_created_at')
    op.drop_table('measurements')
