"""``GET /api/.well-known/jwks.json``: the public keys that check package receipts.

Anonymous on purpose: a data subject, a DPO or a regulator checks a receipt without an account
here (``dsrctl verify --jwks URL``), and public keys are public. Every version of the receipt
key that signed a receipt still within the evidence's retention stays listed after a rotation
(:meth:`~dsr_export.adapters.receipt_signer.KeyVaultReceiptSigner.public_keys`), so a receipt
checks for as long as the evidence that mentions it is kept.

Being anonymous, the route must not turn each call into a Key Vault call: the signer caches the
set for five minutes, and the answer says so to caches (``Cache-Control``). A failure is a 503
problem document naming the setting or the role to fix, never a key's private detail.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final

import azure.durable_functions as df
import azure.functions as func

from dsr_export import composition
from dsr_export.domain import receipt
from dsr_export.domain.logs import log_event
from dsr_export.settings import SettingsError

if TYPE_CHECKING:
    from dsr_export.adapters.receipt_signer import ReceiptSigningError
from intake.responses import misconfigured, problem

bp = df.Blueprint()

#: RFC 7517 section 8.5's media type for a JWK Set.
JWKS_MEDIA_TYPE: Final = "application/jwk-set+json"
#: As long as the signer reuses a set it read (JWKS_CACHE_SECONDS): a rotation shows within it.
CACHE_CONTROL: Final = "public, max-age=300"


@bp.route(route=".well-known/jwks.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def get_jwks(req: func.HttpRequest) -> func.HttpResponse:
    """The receipt key's published versions as a JWK Set (no authentication)."""
    from dsr_export.adapters.receipt_signer import ReceiptSigningError

    try:
        keys = composition.receipt_signer().public_keys()
    except SettingsError as exc:
        return _uncached(misconfigured(exc))
    except ReceiptSigningError as exc:
        return _uncached(_unavailable(exc))
    document = receipt.jwks_document(keys)
    return func.HttpResponse(
        json.dumps(document, indent=2),
        status_code=200,
        mimetype=JWKS_MEDIA_TYPE,
        headers={"Cache-Control": CACHE_CONTROL},
    )


def _unavailable(exc: ReceiptSigningError) -> func.HttpResponse:
    log_event("intake_unavailable", reason="jwks", code=exc.code)
    answer = problem(
        503, "Signing keys unavailable", f"{exc.message}: {exc.fix}", "signing-keys-unavailable"
    )
    if exc.transient:
        answer.headers["Retry-After"] = "60"
    return answer


def _uncached(answer: func.HttpResponse) -> func.HttpResponse:
    answer.headers["Cache-Control"] = "no-store"
    return answer
