"""IAB Global Privacy Platform (GPP) strings: the header and the US sections we emit.

Pure encoding, no I/O. Pinned versions:

- GPP header: type 3, version 1 (GPP Consent String Specification v1).
- ``usnat`` (section id 7): version 2 (MSPA US National, August 2024: 16 sensitive data
  categories, 3 known-child consents), with the GPC sub-section.
- ``usca`` (section id 8): version 1 (California), with the GPC sub-section.

Field values follow the IAB's two-bit convention: ``0`` not applicable, ``1`` yes / opted
out / no consent, ``2`` no / did not opt out / consent (each field's meaning is in the
section's specification). A segment is a bit string cut into 6-bit base64url characters,
padded with zero bits to a whole number of bytes and then of characters (the IAB's
"compressed" base64url, no ``=`` padding). Sections are joined with ``~``, a section's
segments with ``.``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEADER_TYPE = 3
HEADER_VERSION = 1
USNAT_ID, USNAT_VERSION = 7, 2
USCA_ID, USCA_VERSION = 8, 1
GPC_SUBSECTION_TYPE = 1

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def fixed(value: int, bits: int) -> str:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{value} does not fit in {bits} bits")
    return format(value, f"0{bits}b")


def fibonacci(value: int) -> str:
    """Fibonacci coding (Zeckendorf digits, least significant first, then a closing 1)."""
    if value < 1:
        raise ValueError("Fibonacci coding starts at 1")
    fib = [1, 2]
    while fib[-1] + fib[-2] <= value:
        fib.append(fib[-1] + fib[-2])
    digits = ["0"] * len(fib)
    for i in range(len(fib) - 1, -1, -1):
        if fib[i] <= value:
            digits[i] = "1"
            value -= fib[i]
    return "".join(digits).rstrip("0") + "1"


def fibonacci_range(ids: list[int]) -> str:
    """A sorted id list as a Fibonacci integer range: a 12-bit group count, then per group
    a 1-bit flag (single or range) and Fibonacci-coded offsets from the previous value."""
    values = sorted(set(ids))
    groups: list[list[int]] = []
    for v in values:
        if groups and groups[-1][-1] + 1 == v:
            groups[-1].append(v)
        else:
            groups.append([v])
    bits = fixed(len(groups), 12)
    offset = 0
    for g in groups:
        if len(g) == 1:
            bits += "0" + fibonacci(g[0] - offset)
            offset = g[0]
        else:
            bits += "1" + fibonacci(g[0] - offset) + fibonacci(g[-1] - g[0])
            offset = g[-1]
    return bits


def base64url(bits: str) -> str:
    while len(bits) % 8:
        bits += "0"
    while len(bits) % 6:
        bits += "0"
    return "".join(_B64[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def _two_bit(values: tuple[int, ...] | list[int], n: int) -> str:
    if len(values) != n or any(v not in (0, 1, 2) for v in values):
        raise ValueError(f"expected {n} values of 0, 1 or 2, got {values!r}")
    return "".join(fixed(v, 2) for v in values)


def _gpc_segment(gpc: bool) -> str:
    return base64url(fixed(GPC_SUBSECTION_TYPE, 2) + ("1" if gpc else "0"))


@dataclass(frozen=True)
class UsNat:
    """Section 7, version 2. Field names as in the IAB specification (snake_case)."""

    sharing_notice: int = 0
    sale_opt_out_notice: int = 0
    sharing_opt_out_notice: int = 0
    targeted_advertising_opt_out_notice: int = 0
    sensitive_data_processing_opt_out_notice: int = 0
    sensitive_data_limit_use_notice: int = 0
    sale_opt_out: int = 0
    sharing_opt_out: int = 0
    targeted_advertising_opt_out: int = 0
    sensitive_data_processing: tuple[int, ...] = field(default=(0,) * 16)
    # [13 to 16, under 13, 16 to 17]
    known_child_sensitive_data_consents: tuple[int, ...] = (0, 0, 0)
    personal_data_consents: int = 0
    mspa_covered_transaction: int = 2  # 1 yes, 2 no (never 0)
    mspa_opt_out_option_mode: int = 0
    mspa_service_provider_mode: int = 0
    gpc: bool = False

    def encode(self) -> str:
        if self.mspa_covered_transaction not in (1, 2):
            raise ValueError("MspaCoveredTransaction is 1 or 2")
        core = (
            fixed(USNAT_VERSION, 6)
            + _two_bit(
                [
                    self.sharing_notice,
                    self.sale_opt_out_notice,
                    self.sharing_opt_out_notice,
                    self.targeted_advertising_opt_out_notice,
                    self.sensitive_data_processing_opt_out_notice,
                    self.sensitive_data_limit_use_notice,
                    self.sale_opt_out,
                    self.sharing_opt_out,
                    self.targeted_advertising_opt_out,
                ],
                9,
            )
            + _two_bit(self.sensitive_data_processing, 16)
            + _two_bit(self.known_child_sensitive_data_consents, 3)
            + _two_bit(
                [
                    self.personal_data_consents,
                    self.mspa_covered_transaction,
                    self.mspa_opt_out_option_mode,
                    self.mspa_service_provider_mode,
                ],
                4,
            )
        )
        return base64url(core) + "." + _gpc_segment(self.gpc)


@dataclass(frozen=True)
class UsCa:
    """Section 8, version 1. Field names as in the IAB specification (snake_case)."""

    sale_opt_out_notice: int = 0
    sharing_opt_out_notice: int = 0
    sensitive_data_limit_use_notice: int = 0
    sale_opt_out: int = 0
    sharing_opt_out: int = 0
    sensitive_data_processing: tuple[int, ...] = field(default=(0,) * 9)
    # [sell, share] the personal information of a consumer under 16
    known_child_sensitive_data_consents: tuple[int, ...] = (0, 0)
    personal_data_consents: int = 0
    mspa_covered_transaction: int = 2
    mspa_opt_out_option_mode: int = 0
    mspa_service_provider_mode: int = 0
    gpc: bool = False

    def encode(self) -> str:
        if self.mspa_covered_transaction not in (1, 2):
            raise ValueError("MspaCoveredTransaction is 1 or 2")
        core = (
            fixed(USCA_VERSION, 6)
            + _two_bit(
                [
                    self.sale_opt_out_notice,
                    self.sharing_opt_out_notice,
                    self.sensitive_data_limit_use_notice,
                    self.sale_opt_out,
                    self.sharing_opt_out,
                ],
                5,
            )
            + _two_bit(self.sensitive_data_processing, 9)
            + _two_bit(self.known_child_sensitive_data_consents, 2)
            + _two_bit(
                [
                    self.personal_data_consents,
                    self.mspa_covered_transaction,
                    self.mspa_opt_out_option_mode,
                    self.mspa_service_provider_mode,
                ],
                4,
            )
        )
        return base64url(core) + "." + _gpc_segment(self.gpc)


def header(section_ids: list[int]) -> str:
    return base64url(
        fixed(HEADER_TYPE, 6) + fixed(HEADER_VERSION, 6) + fibonacci_range(section_ids)
    )


def gpp_string(usnat: UsNat, usca: UsCa) -> str:
    """The full string: header, then the sections in ascending section id order."""
    return "~".join([header([USNAT_ID, USCA_ID]), usnat.encode(), usca.encode()])
