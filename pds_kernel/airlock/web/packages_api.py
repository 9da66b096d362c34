"""The gate's package-request operations (``api/packages/requests``): thin, like the other handlers.

A workspace asks for a Python package for its own project (``ws.request_package``); the rules are
:mod:`pds_kernel.packages.permissions`, applied by :class:`~pds_kernel.packages.service.PackageService`.
Approving is not here: an admin approves with ``pds packages approve`` on the platform's side.
"""

from __future__ import annotations

from dataclasses import asdict

from ...packages.service import PackageService
from . import bodies
from .handlers import WorkspaceApiHandler

#: Fields of a package request body.
FIELDS = {"project", "package", "justification"}


class PackageRequestsApi(WorkspaceApiHandler):
    def initialize(self, **kwargs) -> None:
        super().initialize(**kwargs)
        self.packages = PackageService(self.service.runtime, registry=self.service.registry)

    async def get(self) -> None:
        rows = await self.call(self.packages.requests, self.user)
        if self.workspace_project is not None:
            rows = [r for r in rows if r.project == self.workspace_project]
        self.send_json({"requests": [asdict(r) for r in rows]})

    async def post(self) -> None:
        body = self.json_body()
        bodies.check_fields(body, FIELDS, "the package request")
        values = {name: bodies.check_text(body.get(name, ""), name, bodies.MAX_TEXT) for name in FIELDS}
        self.check_workspace(values["project"])
        view = await self.call(self.packages.request, self.user, values["project"], values["package"],
                               values["justification"])
        self.send_json(asdict(view), status=201)
