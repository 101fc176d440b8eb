import threading

import pytest
from django.db import DatabaseError, connection, transaction

from billing.ledger import (
    InsufficientBalance,
    Leg,
    UnbalancedTransaction,
    account_balance_from_postings,
    account_get,
    ledger_is_balanced,
    transaction_post,
    transaction_reverse,
)
from billing.models import LedgerAccount, LedgerTransaction, Posting

P = LedgerAccount.Purpose


@pytest.fixture
def accounts(buyer_org, provider_org):
    return {
        "receivable": account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org),
        "payable": account_get(purpose=P.PROVIDER_PAYABLE, organisation=provider_org),
        "fee": account_get(purpose=P.PLATFORM_FEE),
    }


@pytest.mark.django_db
def test_a_balanced_transaction_moves_cached_balances(accounts):
    txn, created = transaction_post(
        business_key="invoice:1:issue",
        kind="invoice_issue",
        legs=[
            Leg(accounts["receivable"], 10_000),
            Leg(accounts["payable"], -9_500),
            Leg(accounts["fee"], -500),
        ],
    )

    assert created
    assert txn.postings.count() == 3
    for account in accounts.values():
        account.refresh_from_db()
        assert account.balance == account_balance_from_postings(account)
    assert accounts["payable"].normal_balance == 9_500
    assert accounts["fee"].normal_balance == 500
    assert ledger_is_balanced()


@pytest.mark.django_db
def test_an_unbalanced_transaction_is_refused_and_writes_nothing(accounts):
    with pytest.raises(UnbalancedTransaction):
        transaction_post(
            business_key="bad",
            kind="x",
            legs=[Leg(accounts["receivable"], 10_000), Leg(accounts["payable"], -9_999)],
        )
    assert not LedgerTransaction.objects.exists()
    assert not Posting.objects.exists()


@pytest.mark.django_db
def test_the_same_business_key_twice_posts_once(accounts):
    legs = [Leg(accounts["receivable"], 700), Leg(accounts["payable"], -700)]
    first, created_first = transaction_post(business_key="k1", kind="x", legs=legs)
    second, created_second = transaction_post(business_key="k1", kind="x", legs=legs)

    assert (created_first, created_second) == (True, False)
    assert first.pk == second.pk
    accounts["receivable"].refresh_from_db()
    assert accounts["receivable"].balance == 700


@pytest.mark.django_db
def test_a_reversal_is_a_new_transaction_that_restores_balances(accounts):
    original, _ = transaction_post(
        business_key="k2",
        kind="x",
        legs=[Leg(accounts["receivable"], 250), Leg(accounts["payable"], -250)],
    )
    reversal = transaction_reverse(original=original, business_key="k2:reverse")

    assert reversal.reverses == original
    assert LedgerTransaction.objects.count() == 2
    accounts["receivable"].refresh_from_db()
    assert accounts["receivable"].balance == 0


@pytest.mark.django_db
def test_a_floored_account_cannot_be_overdrawn(buyer_org):
    budget = account_get(purpose=P.PROGRAMME_BUDGET, reference="programme:1", floor_zero=True)
    funding = account_get(purpose=P.BANK)
    transaction_post(
        business_key="fund", kind="fund", legs=[Leg(funding, 1_000), Leg(budget, -1_000)]
    )

    with pytest.raises(InsufficientBalance):
        transaction_post(
            business_key="spend", kind="spend", legs=[Leg(budget, 1_001), Leg(funding, -1_001)]
        )

    budget.refresh_from_db()
    assert budget.normal_balance == 1_000
    assert not LedgerTransaction.objects.filter(business_key="spend").exists()


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_refuses_update_and_delete_of_a_posting(accounts):
    transaction_post(
        business_key="k3",
        kind="x",
        legs=[Leg(accounts["receivable"], 100), Leg(accounts["payable"], -100)],
    )
    posting = Posting.objects.first()

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Posting.objects.filter(pk=posting.pk).update(amount=99)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Posting.objects.filter(pk=posting.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerTransaction.objects.filter(business_key="k3").update(memo="edited")
    assert Posting.objects.get(pk=posting.pk).amount == 100


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_refuses_to_commit_unbalanced_postings_written_around_the_service(
    buyer_org, provider_org
):
    receivable = account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org)
    payable = account_get(purpose=P.PROVIDER_PAYABLE, organisation=provider_org)

    with pytest.raises(DatabaseError, match="does not balance"), transaction.atomic():
        txn = LedgerTransaction.objects.create(business_key="raw", kind="raw")
        Posting.objects.create(transaction=txn, account=receivable, amount=500, currency="CNY")
        Posting.objects.create(transaction=txn, account=payable, amount=-400, currency="CNY")
        with connection.cursor() as cursor:  # fire the deferred check now, inside the block
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    assert not LedgerTransaction.objects.exists()
    assert not Posting.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_with_one_business_key_write_once(buyer_org, provider_org):
    receivable = account_get(purpose=P.BUYER_RECEIVABLE, organisation=buyer_org)
    payable = account_get(purpose=P.PROVIDER_PAYABLE, organisation=provider_org)
    barrier = threading.Barrier(4)
    results = []

    def post():
        barrier.wait()
        try:
            results.append(
                transaction_post(
                    business_key="race", kind="x", legs=[Leg(receivable, 100), Leg(payable, -100)]
                )[1]
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False, False, False, True]
    receivable.refresh_from_db()
    assert receivable.balance == 100 == account_balance_from_postings(receivable)
