"""sessions and key scopes: refresh_tokens; api_keys name/expires_at/scopes/rotation

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 03:45:00

Refresh tokens (hashed, one row per token, grouped in families) for sessions; API keys gain a
name, an optional expiry, scopes (NULL = all) and the previous secret's hash kept for the
rotation grace period. Columns and indexes only: no table rebuild on SQLite.
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

KEY_COLUMNS = ('previous_expires_at', 'previous_key_hash', 'scopes', 'expires_at', 'name')


def upgrade():
    op.create_table(
        'refresh_tokens',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('family_id', sa.String(length=32), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_refresh_tokens_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_tokens_token_hash')),
    )
    op.create_index('ix_refresh_tokens_user_id', 'refresh_tokens', ['user_id'], unique=False)
    op.create_index('ix_refresh_tokens_family_id', 'refresh_tokens', ['family_id'], unique=False)
    op.add_column('api_keys', sa.Column('name', sa.String(length=100), nullable=False, server_default=''))
    op.add_column('api_keys', sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('api_keys', sa.Column('scopes', sa.String(length=255), nullable=True))
    op.add_column('api_keys', sa.Column('previous_key_hash', sa.String(length=64), nullable=True))
    op.add_column('api_keys', sa.Column('previous_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_api_keys_previous_key_hash', 'api_keys', ['previous_key_hash'], unique=True)


def downgrade():
    op.drop_index('ix_api_keys_previous_key_hash', table_name='api_keys')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        for column in KEY_COLUMNS:
            batch_op.drop_column(column)
    op.drop_index('ix_refresh_tokens_family_id', table_name='refresh_tokens')
    op.drop_index('ix_refresh_tokens_user_id', table_name='refresh_tokens')
    op.drop_table('refresh_tokens')
