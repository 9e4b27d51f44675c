"""One-window licensing: apply, review, grant, reject, suspend, reinstate, revoke, renew, expire."""

from zistboom.licensing.service import ACTIONS, LicensingError, apply, expire_due, transition

__all__ = ["ACTIONS", "LicensingError", "apply", "expire_due", "transition"]
