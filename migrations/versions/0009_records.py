"""GP records requests; joins the onboarding and scheduling branches

Revision ID: 0009_records
Revises: 0002_patient_details, 0003_documents, 0004_intake, 0005_identity, 0007_scheduling
Create Date: 2026-11-24 09:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0009_records'
down_revision = ('0002_patient_details', '0003_documents', '0004_intake', '0005_identity', '0007_scheduling')
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('records_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('gp_practice', sa.String(length=300), nullable=False),
    sa.Column('authorised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_chased_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('times_chased', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('document_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_records_requests_document_id_documents')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_records_requests_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_records_requests'))
    )
    with op.batch_alter_table('records_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_records_requests_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_records_requests_status'), ['status'], unique=False)


def downgrade():
    op.drop_table('records_requests')
