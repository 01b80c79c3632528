"""Nigerian banks as Paystack lists them (GET /bank), with their NUBAN/CBN codes, and the
sandbox's account-name resolution."""

from __future__ import annotations

import hashlib
from typing import Any

# (id, name, slug, code, longcode): Paystack's ids and codes for these banks.
_BANKS: tuple[tuple[int, str, str, str, str], ...] = (
    (174, "Abbey Mortgage Bank", "abbey-mortgage-bank", "801", ""),
    (1, "Access Bank", "access-bank", "044", "044150149"),
    (3, "Access Bank (Diamond)", "access-bank-diamond", "063", "063150162"),
    (27, "ALAT by WEMA", "alat-by-wema", "035A", "035150103"),
    (2, "Citibank Nigeria", "citibank-nigeria", "023", "023150005"),
    (173, "Coronation Merchant Bank", "coronation-merchant-bank", "559", ""),
    (4, "Ecobank Nigeria", "ecobank-nigeria", "050", "050150010"),
    (6, "Fidelity Bank", "fidelity-bank", "070", "070150003"),
    (7, "First Bank of Nigeria", "first-bank-of-nigeria", "011", "011151003"),
    (8, "First City Monument Bank", "first-city-monument-bank", "214", "214150018"),
    (70, "Globus Bank", "globus-bank", "00103", "103015001"),
    (9, "Guaranty Trust Bank", "guaranty-trust-bank", "058", "058152036"),
    (10, "Heritage Bank", "heritage-bank", "030", "030159992"),
    (22, "Jaiz Bank", "jaiz-bank", "301", "301080020"),
    (11, "Keystone Bank", "keystone-bank", "082", "082150017"),
    (67, "Kuda Bank", "kuda-bank", "50211", ""),
    (233, "Lotus Bank", "lotus-bank", "303", ""),
    (283, "Moniepoint MFB", "moniepoint-mfb-ng", "50515", ""),
    (171, "OPay Digital Services Limited (OPay)", "paycom", "999992", ""),
    (287, "Optimus Bank Limited", "optimus-bank-ltd", "107", ""),
    (172, "PalmPay", "palmpay", "999991", ""),
    (169, "Parallex Bank", "parallex-bank", "104", ""),
    (13, "Polaris Bank", "polaris-bank", "076", "076151006"),
    (232, "PremiumTrust Bank", "premiumtrust-bank-ng", "105", ""),
    (25, "Providus Bank", "providus-bank", "101", ""),
    (14, "Stanbic IBTC Bank", "stanbic-ibtc-bank", "221", "221159522"),
    (15, "Standard Chartered Bank", "standard-chartered-bank", "068", "068150015"),
    (16, "Sterling Bank", "sterling-bank", "232", "232150016"),
    (26, "Suntrust Bank", "suntrust-bank", "100", ""),
    (199, "TAJ Bank", "taj-bank", "302", ""),
    (189, "Titan Bank", "titan-bank", "102", ""),
    (17, "Union Bank of Nigeria", "union-bank-of-nigeria", "032", "032080474"),
    (18, "United Bank For Africa", "united-bank-for-africa", "033", "033153513"),
    (19, "Unity Bank", "unity-bank", "215", "215154097"),
    (20, "Wema Bank", "wema-bank", "035", "035150103"),
    (21, "Zenith Bank", "zenith-bank", "057", "057150013"),
)
_CREATED_AT = "2016-07-14T10:04:29.000Z"
_UPDATED_AT = "2024-06-19T11:20:49.000Z"

BANKS: tuple[dict[str, Any], ...] = tuple(
    {
        "id": bank_id,
        "name": name,
        "slug": slug,
        "code": code,
        "longcode": longcode,
        "gateway": "emandate" if longcode else None,
        "pay_with_bank": False,
        "supports_transfer": True,
        "available_for_direct_debit": bool(longcode),
        "active": True,
        "is_deleted": False,
        "country": "Nigeria",
        "currency": "NGN",
        "type": "nuban",
        "createdAt": _CREATED_AT,
        "updatedAt": _UPDATED_AT,
    }
    for bank_id, name, slug, code, longcode in _BANKS
)
BY_CODE = {bank["code"]: bank for bank in BANKS}

# Account numbers that no bank knows: resolving one answers "Could not resolve account name".
UNRESOLVABLE_PREFIX = "000000"

_FIRST_NAMES = (
    "ADAEZE", "ADEBAYO", "AISHA", "CHIDI", "CHIOMA", "EMEKA", "FUNMILAYO", "IBRAHIM",
    "IFEOMA", "KEHINDE", "NGOZI", "OLUWASEUN", "SEGUN", "TEMITOPE", "TUNDE", "YETUNDE",
)  # fmt: skip
_LAST_NAMES = (
    "ABUBAKAR", "ADEYEMI", "BALOGUN", "EZE", "NWOSU", "OKAFOR", "OKONKWO", "OLADIPO",
    "ONYEKACHI", "OYELARAN", "SANUSI", "UCHENNA", "UMARU", "YUSUF",
)  # fmt: skip


def account_name(account_number: str) -> str:
    """The holder's name the sandbox's banks give an account: always the same for a number."""
    digest = hashlib.sha256(account_number.encode()).digest()
    first = _FIRST_NAMES[digest[0] % len(_FIRST_NAMES)]
    middle = _FIRST_NAMES[digest[1] % len(_FIRST_NAMES)]
    last = _LAST_NAMES[digest[2] % len(_LAST_NAMES)]
    return f"{first} {middle} {last}" if first != middle else f"{first} {last}"


def resolvable(account_number: str, bank_code: str) -> bool:
    return (
        bank_code in BY_CODE
        and len(account_number) == 10
        and account_number.isdigit()
        and not account_number.startswith(UNRESOLVABLE_PREFIX)
    )
