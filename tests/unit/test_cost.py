"""Cost estimates equal the hand computation from prices.yaml."""

from __future__ import annotations

from decimal import Decimal

import pytest

from airlaunch.cost import ARCHITECTURES, CostError, Platform, PriceTable, money, run_cost, s3_requests, try_cost
from airlaunch.runtime.settings import RuntimeSettings

TABLE = PriceTable.load()
D = Decimal


def test_the_price_table_says_when_and_where_from() -> None:
    assert TABLE.date == "2026-12-01" and TABLE.currency == "USD"
    assert TABLE.sources["fargate"] == "https://aws.amazon.com/fargate/pricing/"
    assert (TABLE.granularity_seconds, TABLE.minimum_seconds) == (1, 60)
    assert {"us-east-1", "eu-west-1", "eu-central-1"} <= set(TABLE.regions)
    for prices in TABLE.regions.values():
        assert set(prices.fargate) == set(ARCHITECTURES) and set(prices.fargate_spot) == {"x86_64"}
        assert prices.fargate_spot["x86_64"].vcpu_hour < prices.fargate["x86_64"].vcpu_hour


def test_fargate_cost_of_a_known_size_and_duration_matches_the_hand_computation() -> None:
    # 0.5 vCPU with 1024 MiB, 90 s, x86_64, on demand, us-east-1: 0.5 x 0.04048 + 1 x 0.004445 per hour.
    cost = try_cost(TABLE, Platform(), cpu=0.5, memory_mib=1024, seconds=90)
    assert (cost.cpu_units, cost.memory_mib, cost.billed_seconds) == (512, 1024, 90)
    assert cost.fargate == (D("0.5") * D("0.04048") + D(1) * D("0.004445")) * 90 / 3600 == D("0.000617125")


def test_the_size_is_rounded_up_as_fargate_rounds_it() -> None:
    # The reference catalog's 0.5 vCPU / 256 MiB runs (and is billed) as 512 units with 1024 MiB.
    rounded = try_cost(TABLE, Platform(), cpu=0.5, memory_mib=256, seconds=90)
    assert (rounded.cpu_units, rounded.memory_mib, rounded.fargate) == (512, 1024, D("0.000617125"))
    with pytest.raises(CostError, match="larger than any Fargate task"):
        try_cost(TABLE, Platform(), cpu=16, memory_mib=200_000, seconds=1)


def test_per_second_billing_with_a_one_minute_minimum() -> None:
    assert [TABLE.billed_seconds(s) for s in (0, 10, 59.9, 60, 90.2, 3600)] == [60, 60, 60, 60, 91, 3600]
    short = try_cost(TABLE, Platform(), cpu=0.25, memory_mib=512, seconds=5)
    assert short.billed_seconds == 60
    assert short.fargate == (D("0.25") * D("0.04048") + D("0.5") * D("0.004445")) * 60 / 3600


def test_architecture_region_and_spot_change_the_rate() -> None:
    arm = try_cost(TABLE, Platform(region="eu-central-1", architecture="arm64"), cpu=1, memory_mib=2048, seconds=360)
    assert arm.fargate == (D("0.03725") + 2 * D("0.00409")) * 360 / 3600 == D("0.004543")
    spot = try_cost(TABLE, Platform(spot=True), cpu=1, memory_mib=2048, seconds=360)
    assert spot.fargate == (D("0.01264355") + 2 * D("0.00138835")) / 10
    with pytest.raises(CostError, match="no Fargate Spot price for arm64 in us-east-1"):
        try_cost(TABLE, Platform(spot=True, architecture="arm64"), cpu=1, memory_mib=2048, seconds=60)
    with pytest.raises(CostError, match=r"no prices for region 'mars-1'.*us-east-1"):
        try_cost(TABLE, Platform(region="mars-1"), cpu=1, memory_mib=2048, seconds=60)


def test_launcher_lambda_and_s3_requests_are_added() -> None:
    puts, gets = s3_requests(files_written=4, code_seconds=3.5)  # params, result, log, notebook; 1 interim log
    assert (puts, gets) == (6, 3)
    cost = try_cost(TABLE, Platform(), cpu=0.5, memory_mib=1024, seconds=90, puts=puts, gets=gets)
    # One launch: a request and 0.5 s at 256 MB (0.25 GB) x86_64.
    assert cost.launcher == D("0.0000002") + D("0.25") * D("0.5") * D("0.0000166667") == D("0.0000022833375")
    assert cost.s3 == (6 * D("0.005") + 3 * D("0.0004")) / 1000 == D("0.0000312")
    assert cost.total == D("0.000617125") + D("0.0000022833375") + D("0.0000312")
    assert cost.to_dict()["total"] == float(cost.total) and cost.to_dict()["billed_seconds"] == 90


def test_a_run_costs_the_sum_of_its_tries() -> None:
    tries = [try_cost(TABLE, Platform(), cpu=0.5, memory_mib=1024, seconds=s) for s in (90, 120)]
    assert run_cost(tries) == tries[0].total + tries[1].total
    assert run_cost([]) == 0
    assert money(D("0.000617125")) == "$0.000617" and money(D("12.345")) == "$12.35" and money(None) == "-"


def test_the_running_log_is_uploaded_less_often_as_the_task_ages() -> None:
    runtime = RuntimeSettings(log_flush_seconds=2, log_flush_max_seconds=15)
    assert [runtime.log_flush_interval(age) for age in (0, 20, 60, 150, 3600)] == [2, 2, 6, 15, 15]
    assert runtime.interim_log_uploads(1.9) == 0 and runtime.interim_log_uploads(2) == 1
    assert 250 <= runtime.interim_log_uploads(3600) <= 270  # 1,800 at a fixed 2 s
    assert s3_requests(0, 3600, runtime)[0] == 1 + runtime.interim_log_uploads(3600)
