"""intake: questionnaire versions, responses (FHIR QuestionnaireResponse) and clinicians' decisions

Revision ID: 0004_intake
Revises: 0001_foundation
Create Date: 2026-11-24 08:41:52.793283

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004_intake'
down_revision = '0001_foundation'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('intake_questionnaires',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=255), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('resource', sa.Text(), nullable=False),
    sa.Column('rules', sa.Text(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('loaded_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['loaded_by_id'], ['users.id'], name=op.f('fk_intake_questionnaires_loaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_questionnaires')),
    sa.UniqueConstraint('url', 'version', name=op.f('uq_intake_questionnaires_url'))
    )
    op.create_table('intake_responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('questionnaire_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('resource', sa.Text(), nullable=False),
    sa.Column('current_step', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=40), nullable=True),
    sa.Column('findings', sa.Text(), nullable=True),
    sa.Column('urgent_help', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_intake_responses_patient_id_patients')),
    sa.ForeignKeyConstraint(['questionnaire_id'], ['intake_questionnaires.id'], name=op.f('fk_intake_responses_questionnaire_id_intake_questionnaires')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_responses')),
    sa.UniqueConstraint('patient_id', 'questionnaire_id', name=op.f('uq_intake_responses_patient_id'))
    )
    with op.batch_alter_table('intake_responses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intake_responses_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_intake_responses_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_intake_responses_status'), ['status'], unique=False)

    op.create_table('intake_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('response_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('clinician_id', sa.Integer(), nullable=False),
    sa.Column('from_state', sa.String(length=40), nullable=False),
    sa.Column('to_state', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['clinician_id'], ['users.id'], name=op.f('fk_intake_decisions_clinician_id_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_intake_decisions_patient_id_patients')),
    sa.ForeignKeyConstraint(['response_id'], ['intake_responses.id'], name=op.f('fk_intake_decisions_response_id_intake_responses')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_decisions'))
    )
    with op.batch_alter_table('intake_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intake_decisions_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_intake_decisions_response_id'), ['response_id'], unique=False)


def downgrade():
    with op.batch_alter_table('intake_decisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intake_decisions_response_id'))
        batch_op.drop_index(batch_op.f('ix_intake_decisions_patient_id'))

    op.drop_table('intake_decisions')
    with op.batch_alter_table('intake_responses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intake_responses_status'))
        batch_op.drop_index(batch_op.f('ix_intake_responses_patient_id'))
        batch_op.drop_index(batch_op.f('ix_intake_responses_outcome'))

    op.drop_table('intake_responses')
    op.drop_table('intake_questionnaires')
