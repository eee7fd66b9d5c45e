"""identity checks and provider webhook events

Revision ID: 0005_identity
Revises: 0001_foundation
Create Date: 2026-11-24 09:10:00.000000

The photos are documents of the documents domain, referred to by id only (no foreign key): that
domain's table is made by its own migration branch, which may run after this one.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005_identity'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('identity_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('document_type', sa.Enum('passport', 'driving_licence', name='documenttype', native_enum=False, length=20), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.Column('selfie_document_id', sa.Integer(), nullable=False),
    sa.Column('document_expiry', sa.Date(), nullable=False),
    sa.Column('mrz_enc', sa.LargeBinary(), nullable=True),
    sa.Column('status', sa.Enum('submitted', 'approved', 'rejected', name='checkstatus', native_enum=False, length=12), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('provider_reference', sa.String(length=100), nullable=True),
    sa.Column('reviewer_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rejection_reason', sa.String(length=600), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_identity_checks_patient_id_patients')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_identity_checks_reviewer_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_checks')),
    sa.UniqueConstraint('provider', 'provider_reference', name='uq_identity_checks_provider_reference')
    )
    with op.batch_alter_table('identity_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_checks_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_identity_checks_queue', ['status', 'submitted_at'], unique=False)
        # At most one check waiting for a decision per patient.
        batch_op.create_index('uq_identity_checks_open', ['patient_id'], unique=True,
                              sqlite_where=sa.text("status = 'submitted'"),
                              postgresql_where=sa.text("status = 'submitted'"))

    op.create_table('identity_webhook_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('check_id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['check_id'], ['identity_checks.id'], name=op.f('fk_identity_webhook_events_check_id_identity_checks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_webhook_events')),
    sa.UniqueConstraint('provider', 'event_id', name='uq_identity_webhook_events_provider_event')
    )
    with op.batch_alter_table('identity_webhook_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_identity_webhook_events_check_id'), ['check_id'], unique=False)


def downgrade():
    with op.batch_alter_table('identity_webhook_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_identity_webhook_events_check_id'))

    op.drop_table('identity_webhook_events')
    with op.batch_alter_table('identity_checks', schema=None) as batch_op:
        batch_op.drop_index('uq_identity_checks_open')
        batch_op.drop_index('ix_identity_checks_queue')
        batch_op.drop_index(batch_op.f('ix_identity_checks_patient_id'))

    op.drop_table('identity_checks')
