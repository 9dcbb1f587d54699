"""What a try or a run costs on AWS, or would cost: an estimate from the price table prices.yaml.

Fargate bills the requested size after its rounding (:func:`airlaunch.catalog.fargate_size`),
per architecture, on demand or Spot, per second from the image pull until the task stops,
with a one-minute minimum. Each launch is one invocation of the launcher Lambda, and each
try makes a few S3 requests. The arithmetic is decimal, so an estimate equals the hand
computation from the table. For a local (Docker) run the same formula tells what the run
would cost on Fargate. Not counted: data transfer, CloudWatch Logs, NAT, public IPv4.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from airlaunch.catalog import FargateSizeError, fargate_size
from airlaunch.runtime.settings import RuntimeSettings

PRICES_FILE = Path(__file__).with_name("prices.yaml")
ARCHITECTURES = ("x86_64", "arm64")
_HOUR = Decimal(3600)
_THOUSAND = Decimal(1000)
_MIB_PER_GB = Decimal(1024)  # AWS prices memory per GB of 1024 MiB


class CostError(ValueError):
    """No price for what was asked (region, architecture, Spot), or a size Fargate cannot run."""


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))  # via str: YAML's 0.04048 stays exactly 0.04048


@dataclass(frozen=True)
class Rate:
    vcpu_hour: Decimal
    gb_hour: Decimal


@dataclass(frozen=True)
class RegionPrices:
    fargate: dict[str, Rate]
    fargate_spot: dict[str, Rate]
    lambda_request: Decimal
    lambda_gb_second: dict[str, Decimal]
    s3_put_per_1000: Decimal
    s3_get_per_1000: Decimal

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionPrices:
        def rates(entry: dict[str, Any]) -> dict[str, Rate]:
            return {arch: Rate(_dec(r["vcpu_hour"]), _dec(r["gb_hour"])) for arch, r in entry.items()}

        return cls(
            fargate=rates(data["fargate"]),
            fargate_spot=rates(data.get("fargate_spot") or {}),
            lambda_request=_dec(data["lambda"]["request"]),
            lambda_gb_second={arch: _dec(p) for arch, p in data["lambda"]["gb_second"].items()},
            s3_put_per_1000=_dec(data["s3"]["put_per_1000"]),
            s3_get_per_1000=_dec(data["s3"]["get_per_1000"]),
        )


@dataclass(frozen=True)
class PriceTable:
    """prices.yaml: rates per region, the billing rule, and where and when the figures came from."""

    date: str
    currency: str
    sources: dict[str, str]
    granularity_seconds: int
    minimum_seconds: int
    regions: dict[str, RegionPrices]

    @classmethod
    def load(cls, path: Path = PRICES_FILE) -> PriceTable:
        data = yaml.safe_load(path.read_text())
        billing = data["fargate_billing"]
        return cls(
            date=str(data["date"]),
            currency=data["currency"],
            sources=dict(data["sources"]),
            granularity_seconds=int(billing["granularity_seconds"]),
            minimum_seconds=int(billing["minimum_seconds"]),
            regions={name: RegionPrices.from_dict(entry) for name, entry in data["regions"].items()},
        )

    def region(self, name: str) -> RegionPrices:
        if name not in self.regions:
            raise CostError(f"no prices for region {name!r} in the price table; it has: {', '.join(self.regions)}")
        return self.regions[name]

    def billed_seconds(self, seconds: float) -> int:
        """Fargate's billed duration: rounded up to the granularity, at least the minimum."""
        step = self.granularity_seconds
        return max(self.minimum_seconds, math.ceil(max(seconds, 0) / step) * step)


@dataclass(frozen=True)
class Platform:
    """Where and how tries run, as far as prices go; the Lambda figures are the launcher's."""

    region: str = "us-east-1"
    architecture: str = "x86_64"
    spot: bool = False
    lambda_memory_mb: int = 256  # MemorySize of the launcher function in infra/template.yaml
    lambda_seconds: Decimal = Decimal("0.5")  # billed duration of one launch invocation (an assumption)
    lambda_architecture: str = "x86_64"


@dataclass(frozen=True)
class TryCost:
    """The estimate for one try, with what it was computed from."""

    cpu_units: int
    memory_mib: int
    billed_seconds: int
    fargate: Decimal
    launcher: Decimal  # the launcher Lambda's requests and duration
    s3: Decimal
    platform: Platform

    @property
    def total(self) -> Decimal:
        return self.fargate + self.launcher + self.s3

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": float(self.total),
            "fargate": float(self.fargate),
            "lambda": float(self.launcher),
            "s3": float(self.s3),
            "cpu_units": self.cpu_units,
            "memory_mib": self.memory_mib,
            "billed_seconds": self.billed_seconds,
            "region": self.platform.region,
            "architecture": self.platform.architecture,
            "spot": self.platform.spot,
        }


def fargate_rate(prices: RegionPrices, platform: Platform) -> Rate:
    table = prices.fargate_spot if platform.spot else prices.fargate
    if platform.architecture not in table:
        kind = "Fargate Spot" if platform.spot else "Fargate"
        raise CostError(
            f"no {kind} price for {platform.architecture} in {platform.region} (it has: {', '.join(table)})"
        )
    return table[platform.architecture]


def try_cost(
    table: PriceTable,
    platform: Platform,
    *,
    cpu: float,
    memory_mib: int,
    seconds: float,
    puts: int = 0,
    gets: int = 0,
    invocations: int = 1,
) -> TryCost:
    """One try of ``cpu`` vCPU and ``memory_mib`` (before rounding) that Fargate bills for ``seconds``."""
    prices = table.region(platform.region)
    try:
        units, mib = fargate_size(cpu, memory_mib)
    except FargateSizeError as exc:
        raise CostError(str(exc)) from exc
    billed = table.billed_seconds(seconds)
    rate = fargate_rate(prices, platform)
    per_hour = Decimal(units) / 1024 * rate.vcpu_hour + Decimal(mib) / _MIB_PER_GB * rate.gb_hour
    gb_seconds = Decimal(platform.lambda_memory_mb) / _MIB_PER_GB * platform.lambda_seconds
    per_invocation = prices.lambda_request + gb_seconds * prices.lambda_gb_second[platform.lambda_architecture]
    return TryCost(
        cpu_units=units,
        memory_mib=mib,
        billed_seconds=billed,
        fargate=per_hour * billed / _HOUR,
        launcher=per_invocation * invocations,
        s3=(puts * prices.s3_put_per_1000 + gets * prices.s3_get_per_1000) / _THOUSAND,
        platform=platform,
    )


def served_cost(table: PriceTable, platform: Platform, *, puts: int, gets: int) -> TryCost:
    """A try served from the result cache: no task, so no Fargate; the launcher's one invocation and the
    S3 requests of the lookup and the copies."""
    prices = table.region(platform.region)
    gb_seconds = Decimal(platform.lambda_memory_mb) / _MIB_PER_GB * platform.lambda_seconds
    per_invocation = prices.lambda_request + gb_seconds * prices.lambda_gb_second[platform.lambda_architecture]
    s3 = (puts * prices.s3_put_per_1000 + gets * prices.s3_get_per_1000) / _THOUSAND
    return TryCost(0, 0, 0, Decimal(0), per_invocation, s3, platform)


def run_cost(costs: Iterable[TryCost]) -> Decimal:
    return sum((c.total for c in costs), Decimal(0))


def s3_requests(
    files_written: int, code_seconds: float | None, runtime: RuntimeSettings | None = None
) -> tuple[int, int]:
    """PUTs and GETs of one try: every file it wrote plus status.json, and at most one interim log
    upload per flush (the runtime's schedule); GETs of params (runtime), status.json and result (trigger)."""
    interim_logs = (runtime or RuntimeSettings()).interim_log_uploads(code_seconds or 0)
    return files_written + 1 + interim_logs, 3


def money(amount: Decimal | float | None) -> str:
    """``$0.000617`` style: enough digits to see a cost of a fraction of a cent."""
    if amount is None:
        return "-"
    value = float(amount)
    return f"${value:.2f}" if value >= 1 else f"${value:.6f}"
