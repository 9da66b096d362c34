"""Who may do what with packages. The rules live in :mod:`pds_kernel.permissions`, the platform's
one permissions module; this module names the packages' part of it for :mod:`.service`.

* **Request**: an active researcher of an open project, for that project, personally (the
  registry decides and records the decision in the audit trail).
* **Approve or refuse**: a platform administrator, personally (never through ``--as``), or the
  chart's package-approval Job (``service:package-approval``). Approving downloads code that every
  workspace may then install; nobody else decides that.
* **List**: admins see every request; others see the requests of the projects they are an active
  member of. Everyone who can list sees the approved packages (what every workspace can install).
"""

from __future__ import annotations

from ..permissions import can_approve_package as can_approve
from ..permissions import can_request_package as can_request
from ..permissions import can_see_package_requests as can_see_requests_of
from ..permissions import check_approve_package as check_approve
from ..permissions import check_request_package as check_request

__all__ = ["can_approve", "can_request", "can_see_requests_of", "check_approve", "check_request"]
