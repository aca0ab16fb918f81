"""Signals for ad tech and tags, derived from decisions (never stored).

``signals(...)`` turns a subject's effective decisions into:

- an IAB GPP string with the ``usnat`` (7) and ``usca`` (8) sections
  (``consent.domain.gpp`` encodes it);
- Google Consent Mode v2 values.

Mapping (the README's "Signals for ad tech" has the full table):

- notices and MSPA fields: operator settings (``GppNotices``);
- ``SaleOptOut``: decision ``sale`` denied -> 1 (opted out), allowed -> 2; 0 when the sale
  opt-out notice is not 1 (the IAB's "not applicable or no notice");
- ``SharingOptOut`` and usnat's ``TargetedAdvertisingOptOut``: decision ``share`` (sharing
  for cross-context behavioural advertising), same rule with their own notices;
- ``SensitiveDataProcessing``: all 0, the catalog has no sensitive-data purpose;
- ``KnownChildSensitiveDataConsents``: a child -> 1 (no consent) in each slot for an age
  under 16; a teen (13 to 15) -> 2 (consent) only where sale/share are allowed, else 1;
  adults and unknown ages -> 0;
- ``PersonalDataConsents``: 0, no secondary-use advertising purpose;
- ``Gpc``: the subject's GPC opt-out was honoured, or this request carries ``Sec-GPC: 1``.

Consent Mode v2: ``ad_storage`` = ``cookies_advertising``; ``analytics_storage`` =
``cookies_analytics``; ``ad_user_data`` = ``cookies_advertising`` and ``sale`` and
``share``; ``ad_personalization`` = ``ad_user_data`` and ``personalization``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consent.domain.gpp import USCA_ID, USNAT_ID, UsCa, UsNat, gpp_string
from consent.domain.model import Decision


@dataclass(frozen=True)
class GppNotices:
    """What the operator's notices and MSPA status say (IAB two-bit values)."""

    sharing_notice: int = 1
    sale_opt_out_notice: int = 1
    sharing_opt_out_notice: int = 1
    targeted_advertising_opt_out_notice: int = 1
    sensitive_data_processing_opt_out_notice: int = 0
    sensitive_data_limit_use_notice: int = 0
    mspa_covered_transaction: int = 2
    mspa_opt_out_option_mode: int = 0
    mspa_service_provider_mode: int = 0


def _opt_out(notice: int, allowed: bool) -> int:
    if notice != 1:
        return 0  # "not applicable: the notice was not applicable or not provided"
    return 2 if allowed else 1


def _consent(allowed: bool) -> int:
    return 2 if allowed else 1


def _granted(allowed: bool) -> str:
    return "granted" if allowed else "denied"


def consent_mode(decisions: Mapping[str, Decision]) -> dict[str, str]:
    def ok(key: str) -> bool:
        d = decisions.get(key)
        return bool(d and d.allowed)

    ad_user_data = ok("cookies_advertising") and ok("sale") and ok("share")
    return {
        "ad_storage": _granted(ok("cookies_advertising")),
        "analytics_storage": _granted(ok("cookies_analytics")),
        "ad_user_data": _granted(ad_user_data),
        "ad_personalization": _granted(ad_user_data and ok("personalization")),
    }


def gpp_sections(
    decisions: Mapping[str, Decision], age_status: str, gpc: bool, notices: GppNotices
) -> tuple[UsNat, UsCa]:
    sale = bool(decisions.get("sale") and decisions["sale"].allowed)
    share = bool(decisions.get("share") and decisions["share"].allowed)
    if age_status == "child":
        usnat_child, usca_child = (1, 1, 0), (1, 1)
    elif age_status == "teen_opt_in":
        usnat_child, usca_child = (
            (_consent(sale and share), 0, 0),
            (_consent(sale), _consent(share)),
        )
    else:
        usnat_child, usca_child = (0, 0, 0), (0, 0)
    n = notices
    usnat = UsNat(
        sharing_notice=n.sharing_notice,
        sale_opt_out_notice=n.sale_opt_out_notice,
        sharing_opt_out_notice=n.sharing_opt_out_notice,
        targeted_advertising_opt_out_notice=n.targeted_advertising_opt_out_notice,
        sensitive_data_processing_opt_out_notice=n.sensitive_data_processing_opt_out_notice,
        sensitive_data_limit_use_notice=n.sensitive_data_limit_use_notice,
        sale_opt_out=_opt_out(n.sale_opt_out_notice, sale),
        sharing_opt_out=_opt_out(n.sharing_opt_out_notice, share),
        targeted_advertising_opt_out=_opt_out(n.targeted_advertising_opt_out_notice, share),
        known_child_sensitive_data_consents=usnat_child,
        mspa_covered_transaction=n.mspa_covered_transaction,
        mspa_opt_out_option_mode=n.mspa_opt_out_option_mode,
        mspa_service_provider_mode=n.mspa_service_provider_mode,
        gpc=gpc,
    )
    usca = UsCa(
        sale_opt_out_notice=n.sale_opt_out_notice,
        sharing_opt_out_notice=n.sharing_opt_out_notice,
        sensitive_data_limit_use_notice=n.sensitive_data_limit_use_notice,
        sale_opt_out=_opt_out(n.sale_opt_out_notice, sale),
        sharing_opt_out=_opt_out(n.sharing_opt_out_notice, share),
        known_child_sensitive_data_consents=usca_child,
        mspa_covered_transaction=n.mspa_covered_transaction,
        mspa_opt_out_option_mode=n.mspa_opt_out_option_mode,
        mspa_service_provider_mode=n.mspa_service_provider_mode,
        gpc=gpc,
    )
    return usnat, usca


def signals(
    decisions: Mapping[str, Decision], age_status: str, gpc: bool, notices: GppNotices
) -> dict[str, Any]:
    usnat, usca = gpp_sections(decisions, age_status, gpc, notices)
    return {
        "gpp": gpp_string(usnat, usca),
        "gpp_sid": [USNAT_ID, USCA_ID],
        "consent_mode": consent_mode(decisions),
    }
