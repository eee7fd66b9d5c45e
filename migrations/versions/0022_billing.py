"""billing: price list, arrangements, charges, gapless invoices and credit notes, payments, refunds, checkouts

Revision ID: 0022_billing
Revises: 0019_trgm_search
Create Date: 2026-12-06 21:58:35

Money is integer pence (BIGINT). The two gapless series (invoices, credit notes) start at 1 in billing_counters.
"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0022_billing'
down_revision = '0019_trgm_search'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('billing_counters',
    sa.Column('name', sa.String(length=20), nullable=False),
    sa.Column('next_value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_billing_counters'))
    )
    op.bulk_insert(sa.table('billing_counters', sa.column('name', sa.String), sa.column('next_value', sa.BigInteger)),
                   [{'name': 'invoice', 'next_value': 1}, {'name': 'credit_note', 'next_value': 1}])
    op.create_table('billing_webhook_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=300), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_webhook_events')),
    sa.UniqueConstraint('provider', 'event_id', name='uq_billing_webhook_events_provider_event')
    )
    op.create_table('billing_price_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('vat_treatment', sa.String(length=20), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_pence >= 0', name=op.f('ck_billing_price_items_amount_not_negative')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_billing_price_items_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_price_items')),
    sa.UniqueConstraint('code', 'effective_from', name='uq_billing_price_items_code_from')
    )
    op.create_table('billing_arrangements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('discount_bp', sa.Integer(), nullable=False),
    sa.Column('applies_to', sa.String(length=20), nullable=True),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('approved_by', sa.Integer(), nullable=False),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('discount_bp > 0 AND discount_bp <= 10000', name=op.f('ck_billing_arrangements_discount_range')),
    sa.CheckConstraint('valid_to IS NULL OR valid_to >= valid_from', name=op.f('ck_billing_arrangements_dates_in_order')),
    sa.ForeignKeyConstraint(['approved_by'], ['users.id'], name=op.f('fk_billing_arrangements_approved_by_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_arrangements_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_arrangements'))
    )
    with op.batch_alter_table('billing_arrangements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_arrangements_patient_id'), ['patient_id'], unique=False)

    op.create_table('billing_invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('net_pence', sa.BigInteger(), nullable=False),
    sa.Column('vat_pence', sa.BigInteger(), nullable=False),
    sa.Column('total_pence', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('clinic_details', sa.Text(), nullable=False),
    sa.Column('billed_to', sa.Text(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.CheckConstraint('total_pence = net_pence + vat_pence', name=op.f('ck_billing_invoices_total_adds_up')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_billing_invoices_created_by_users')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_invoices_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_billing_invoices_number')),
    sa.UniqueConstraint('sequence', name=op.f('uq_billing_invoices_sequence'))
    )
    with op.batch_alter_table('billing_invoices', schema=None) as batch_op:
        batch_op.create_index('ix_billing_invoices_patient', ['patient_id', 'issued_at'], unique=False)
        batch_op.create_index('ix_billing_invoices_status', ['status', 'issued_at'], unique=False)

    op.create_table('billing_charges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('price_item_id', sa.Integer(), nullable=True),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('description', sa.String(length=300), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_pence', sa.BigInteger(), nullable=False),
    sa.Column('discount_pence', sa.BigInteger(), nullable=False),
    sa.Column('net_pence', sa.BigInteger(), nullable=False),
    sa.Column('vat_treatment', sa.String(length=20), nullable=False),
    sa.Column('vat_rate_bp', sa.Integer(), nullable=False),
    sa.Column('vat_pence', sa.BigInteger(), nullable=False),
    sa.Column('total_pence', sa.BigInteger(), nullable=False),
    sa.Column('arrangement_id', sa.Integer(), nullable=True),
    sa.Column('appointment_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('net_pence = unit_pence * quantity - discount_pence', name=op.f('ck_billing_charges_net_adds_up')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_billing_charges_quantity_positive')),
    sa.CheckConstraint('total_pence = net_pence + vat_pence', name=op.f('ck_billing_charges_total_adds_up')),
    sa.CheckConstraint('unit_pence >= 0 AND discount_pence >= 0 AND vat_pence >= 0', name=op.f('ck_billing_charges_amounts_not_negative')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_billing_charges_appointment_id_appointments')),
    sa.ForeignKeyConstraint(['arrangement_id'], ['billing_arrangements.id'], name=op.f('fk_billing_charges_arrangement_id_billing_arrangements')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_billing_charges_created_by_users')),
    sa.ForeignKeyConstraint(['invoice_id'], ['billing_invoices.id'], name=op.f('fk_billing_charges_invoice_id_billing_invoices')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_charges_patient_id_patients')),
    sa.ForeignKeyConstraint(['price_item_id'], ['billing_price_items.id'], name=op.f('fk_billing_charges_price_item_id_billing_price_items')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_charges')),
    sa.UniqueConstraint('appointment_id', name='uq_billing_charges_appointment_id')
    )
    with op.batch_alter_table('billing_charges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_charges_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index('ix_billing_charges_patient', ['patient_id', 'status'], unique=False)

    op.create_table('billing_checkouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=40), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=True),
    sa.Column('url', sa.String(length=1000), nullable=True),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount_pence > 0', name=op.f('ck_billing_checkouts_amount_positive')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_billing_checkouts_created_by_users')),
    sa.ForeignKeyConstraint(['invoice_id'], ['billing_invoices.id'], name=op.f('fk_billing_checkouts_invoice_id_billing_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_checkouts')),
    sa.UniqueConstraint('provider', 'reference', name='uq_billing_checkouts_provider_reference'),
    sa.UniqueConstraint('public_id', name=op.f('uq_billing_checkouts_public_id'))
    )
    with op.batch_alter_table('billing_checkouts', schema=None) as batch_op:
        batch_op.create_index('uq_billing_checkouts_open', ['invoice_id'], unique=True, sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))

    op.create_table('billing_credit_notes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.BigInteger(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_pence > 0', name=op.f('ck_billing_credit_notes_amount_positive')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_billing_credit_notes_created_by_users')),
    sa.ForeignKeyConstraint(['invoice_id'], ['billing_invoices.id'], name=op.f('fk_billing_credit_notes_invoice_id_billing_invoices')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_credit_notes_patient_id_patients')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_credit_notes')),
    sa.UniqueConstraint('number', name=op.f('uq_billing_credit_notes_number')),
    sa.UniqueConstraint('sequence', name=op.f('uq_billing_credit_notes_sequence'))
    )
    with op.batch_alter_table('billing_credit_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_credit_notes_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_credit_notes_patient_id'), ['patient_id'], unique=False)

    op.create_table('billing_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=True),
    sa.Column('provider_reference', sa.String(length=100), nullable=True),
    sa.Column('reference', sa.String(length=100), nullable=True),
    sa.Column('checkout_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=True),
    sa.CheckConstraint('amount_pence > 0', name=op.f('ck_billing_payments_amount_positive')),
    sa.ForeignKeyConstraint(['checkout_id'], ['billing_checkouts.id'], name=op.f('fk_billing_payments_checkout_id_billing_checkouts')),
    sa.ForeignKeyConstraint(['invoice_id'], ['billing_invoices.id'], name=op.f('fk_billing_payments_invoice_id_billing_invoices')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_payments_patient_id_patients')),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_billing_payments_recorded_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_payments')),
    sa.UniqueConstraint('provider', 'provider_reference', name='uq_billing_payments_provider_reference')
    )
    with op.batch_alter_table('billing_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_payments_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_payments_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index('ix_billing_payments_received', ['received_at'], unique=False)

    op.create_table('billing_refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('amount_pence', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('reference', sa.String(length=100), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_pence > 0', name=op.f('ck_billing_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_billing_refunds_created_by_users')),
    sa.ForeignKeyConstraint(['invoice_id'], ['billing_invoices.id'], name=op.f('fk_billing_refunds_invoice_id_billing_invoices')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_billing_refunds_patient_id_patients')),
    sa.ForeignKeyConstraint(['payment_id'], ['billing_payments.id'], name=op.f('fk_billing_refunds_payment_id_billing_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_refunds'))
    )
    with op.batch_alter_table('billing_refunds', schema=None) as batch_op:
        batch_op.create_index('ix_billing_refunds_created', ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_refunds_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_refunds_patient_id'), ['patient_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_billing_refunds_payment_id'), ['payment_id'], unique=False)



def downgrade():
    with op.batch_alter_table('billing_refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_refunds_payment_id'))
        batch_op.drop_index(batch_op.f('ix_billing_refunds_patient_id'))
        batch_op.drop_index(batch_op.f('ix_billing_refunds_invoice_id'))
        batch_op.drop_index('ix_billing_refunds_created')

    op.drop_table('billing_refunds')
    with op.batch_alter_table('billing_payments', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_payments_received')
        batch_op.drop_index(batch_op.f('ix_billing_payments_patient_id'))
        batch_op.drop_index(batch_op.f('ix_billing_payments_invoice_id'))

    op.drop_table('billing_payments')
    with op.batch_alter_table('billing_credit_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_credit_notes_patient_id'))
        batch_op.drop_index(batch_op.f('ix_billing_credit_notes_invoice_id'))

    op.drop_table('billing_credit_notes')
    with op.batch_alter_table('billing_checkouts', schema=None) as batch_op:
        batch_op.drop_index('uq_billing_checkouts_open', sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))

    op.drop_table('billing_checkouts')
    with op.batch_alter_table('billing_charges', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_charges_patient')
        batch_op.drop_index(batch_op.f('ix_billing_charges_invoice_id'))

    op.drop_table('billing_charges')
    with op.batch_alter_table('billing_invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_invoices_status')
        batch_op.drop_index('ix_billing_invoices_patient')

    op.drop_table('billing_invoices')
    with op.batch_alter_table('billing_arrangements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_arrangements_patient_id'))

    op.drop_table('billing_arrangements')
    op.drop_table('billing_price_items')
    op.drop_table('billing_webhook_events')
    op.drop_table('billing_counters')
