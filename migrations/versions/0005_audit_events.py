"""audit trail: audit_events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 03:40:00

Who changed what, when and from where (logins, registrations, role/tier/active changes, API keys).
No foreign keys: an event outlives the user or key it names.
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'audit_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('time', sa.DateTime(timezone=True), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('target_type', sa.String(length=16), nullable=True),
        sa.Column('target_id', sa.Integer(), nullable=True),
        sa.Column('ip', sa.String(length=64), nullable=True),
        sa.Column('request_id', sa.String(length=64), nullable=True),
        sa.Column('details', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events')),
    )
    op.create_index('ix_audit_events_time', 'audit_events', ['time', 'id'], unique=False)
    op.create_index('ix_audit_events_action_time', 'audit_events', ['action', 'time'], unique=False)
    op.create_index('ix_audit_events_actor_id_time', 'audit_events', ['actor_id', 'time'], unique=False)


def downgrade():
    op.drop_index('ix_audit_events_actor_id_time', table_name='audit_events')
    op.drop_index('ix_audit_events_action_time', table_name='audit_events')
    op.drop_index('ix_audit_events_time', table_name='audit_events')
    op.drop_table('audit_events')
