"""KubeSpawner's own manifest generation with the PDS hooks (no cluster is contacted)."""

from __future__ import annotations

import pytest
from tornado import web
from traitlets.config import Config

from pds_kernel.audit import AuditTrail
from pds_kernel.errors import InvalidInput
from pds_kernel.hub.common import ADMIN_ROLE, ADMIN_SCOPES
from pds_kernel.hub.kube_spawner import PdsKubeSpawner
from pds_kernel.hub.kubernetes import K8S_ADMIN_SCOPES, configure
from pds_kernel.hub.oidc import ADMIN_GROUP
from pds_kernel.k8s.config import Gpu, K8sConfig
from pds_kernel.sandbox.spec import authorised_workspace_spec, home_volume_name

from .conftest import HUB_HOST, z2jh_hub_config

pytestmark = pytest.mark.asyncio


class FakeGroup:
    def __init__(self, name: str):
        self.name = name


class FakeUser:
    """What KubeSpawner reads of a JupyterHub user; ``db``: the hub's database (its persons' groups)."""

    def __init__(self, name: str, groups: list[str], db=None):
        self.name, self.id, self.url = name, 1, f"/user/{name}/"
        self.groups = [FakeGroup(g) for g in groups]
        self.db = db


def hub_db(people: dict[str, list[str]]):
    """A JupyterHub database (in memory) where each person of ``people`` holds those hub groups."""
    from jupyterhub import orm

    db = orm.new_session_factory("sqlite://")()
    groups: dict[str, orm.Group] = {}
    for person, names in people.items():
        row = orm.User(name=person)
        db.add(row)
        for name in names:
            row.groups.append(groups.setdefault(name, orm.Group(name=name)))
    db.commit()
    return db


class FakeHub:
    api_url = "http://hub:8081/hub/api"
    public_host = HUB_HOST  # JupyterHub's Hub.public_host: its subdomain_host
    url = "http://hub:8081/hub/"
    base_url = "/hub/"


class FakeOrmSpawner:
    def __init__(self, name: str):
        self.name, self.server, self.state = name, None, None


def make_spawner(settings, user: str, groups: list[str], server: str, *, options=None, k8s=None,
                 hub_user: str | None = None):
    """The spawner of person ``user``'s workspace ``server`` (run by her workspace user
    ``user@server``, ADR 17; ``hub_user`` another hub user), ``groups``: her hub groups."""
    c = z2jh_hub_config()
    configure(c, settings=settings, k8s=k8s or K8sConfig())
    name = hub_user or (f"{user}@{server}" if server else user)
    spawner = PdsKubeSpawner(_mock=True, config=c, user=FakeUser(name, [], hub_db({user: groups})), hub=FakeHub(),
                             orm_spawner=FakeOrmSpawner(server))
    spawner.user_options = options or {}
    return spawner


async def spawn_manifest(spawner) -> dict:
    """What KubeSpawner.start() would send: pre-spawn hook, options, manifest, modify hook."""
    spawner.run_pre_spawn_hook()
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    pod = await spawner.modify_pod_hook(spawner, pod)
    return spawner.api.api_client.sanitize_for_serialization(pod)


def denied(runtime) -> list:
    return [e for e in AuditTrail(runtime.sessions).entries() if e.outcome == "denied"]


async def test_member_gets_exactly_the_project(settings, runtime, registry, kubeconfig):
    spawner = make_spawner(settings, "alice", ["alpha-study", "beta-study"], "alpha-study")
    pod = await spawn_manifest(spawner)
    spec, meta = pod["spec"], pod["metadata"]
    assert meta["labels"]["pds.project"] == "alpha-study"
    assert meta["labels"]["pds.component"] == "workspace"
    assert meta["labels"]["component"] == "singleuser-server"  # z2jh's policies still select it
    assert [c["name"] for c in spec["containers"]] == ["notebook"]
    assert [c["name"] for c in spec["initContainers"]] == ["verify-extract"]  # tests/k8s/test_extract_mount_k8s.py
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(volumes) == {"extract", "home", "imports", "scratch", "extract-check"}
    assert volumes["extract-check"] == {"name": "extract-check", "emptyDir": {"sizeLimit": "1Mi"}}
    assert volumes["extract"]["persistentVolumeClaim"] == {"claimName": "extract-alpha-study", "readOnly": True}
    assert volumes["imports"]["persistentVolumeClaim"] == {"claimName": "imports-alpha-study", "readOnly": True}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == home_volume_name("alpha-study", "alice")
    assert "emptyDir" in volumes["scratch"]
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/data"] == {"name": "extract", "mountPath": "/data", "readOnly": True, "subPath": "extract"}
    assert mounts["/imports"] == {"name": "imports", "mountPath": "/imports", "readOnly": True}
    assert set(mounts) == {"/data", "/home/jovyan", "/imports", "/tmp", "/srv/pds/extract-check"}
    assert mounts["/srv/pds/extract-check"]["readOnly"] is True  # written by verify-extract only
    resources = spec["containers"][0]["resources"]
    # /tmp (1Gi), the extract check's record (1Mi) and 256Mi for the log: what the pod may write on its node
    assert resources["limits"] == {"cpu": "2000m", "memory": "4096Mi", "ephemeral-storage": "1281Mi"}
    assert resources["requests"] == resources["limits"]
    assert spawner.pvc_name == home_volume_name("alpha-study", "alice")


async def test_security_context_is_restricted(settings, runtime, registry, kubeconfig):
    pod = await spawn_manifest(make_spawner(settings, "bob", ["alpha-study"], "alpha-study"))
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["hostNetwork"] is False and spec["hostPID"] is False and spec["hostIPC"] is False
    csc = spec["containers"][0]["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["runAsUser"] != 0


async def test_no_dns_and_hub_reached_by_service_variables(settings, runtime, registry, kubeconfig):
    pod = await spawn_manifest(make_spawner(settings, "bob", ["alpha-study"], "alpha-study"))
    spec = pod["spec"]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"]["nameservers"] == ["127.0.0.1"]
    assert spec["enableServiceLinks"] is True
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://$(HUB_SERVICE_HOST):$(HUB_SERVICE_PORT)/hub/api"
    assert env["DASK_GATEWAY__CLUSTER__OPTIONS__PROJECT"] == "alpha-study"
    assert "hub:8081" not in str(env)


async def test_gpu_only_when_enabled(settings, runtime, registry, kubeconfig):
    off = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study", "beta-study"], "beta-study"))
    assert "nvidia.com/gpu" not in off["spec"]["containers"][0]["resources"]["limits"]
    assert not off["spec"].get("tolerations")
    k8s = K8sConfig(gpu=Gpu(enabled=True))
    on = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study", "beta-study"], "beta-study", k8s=k8s))
    assert on["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert on["spec"]["nodeSelector"] == {"pds.gpu": "true"}
    # a project without GPU in the registry never gets one, even with GPUs enabled
    alpha = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study", "beta-study"], "alpha-study", k8s=k8s))
    assert "nvidia.com/gpu" not in alpha["spec"]["containers"][0]["resources"]["limits"]


@pytest.mark.parametrize("user,groups,server,options,why", [
    ("bob", ["alpha-study"], "beta-study", {}, "not a researcher"),           # non-member
    ("carol", ["alpha-study"], "alpha-study", {}, "expired"),                 # expired member
    ("dave", [], "alpha-study", {}, "not a researcher"),                      # no membership at all
    ("olga", ["alpha-study"], "alpha-study", {}, "not a researcher"),         # checker, not researcher
    ("alice", ["alpha-study"], "beta-study", {}, "hub group"),                # IdP withdrew beta
    ("alice", ["alpha-study", "beta-study"], "", {}, "server name"),          # default server
    ("alice", ["alpha-study", "beta-study"], "alpha-study", {"profile": "beta-study"}, "profile"),
    ("alice", ["alpha-study", "beta-study"], "alpha-study", {"image": "evil:latest"}, "unknown spawn option"),
])
async def test_refused_requests(settings, runtime, registry, kubeconfig, user, groups, server, options, why):
    spawner = make_spawner(settings, user, groups, server, options=options)
    with pytest.raises(web.HTTPError) as err:
        spawner.run_pre_spawn_hook()
    assert err.value.status_code == 403
    assert why in err.value.log_message
    assert any(e.action == "workspace.refused" for e in denied(runtime))


async def test_modify_hook_rechecks_even_without_pre_spawn(settings, runtime, registry, kubeconfig):
    """The last word does not trust that the pre-spawn hook ran."""
    spawner = make_spawner(settings, "bob", ["alpha-study", "beta-study"], "beta-study")
    pod = await spawner.get_pod_manifest()
    with pytest.raises(web.HTTPError):
        await spawner.modify_pod_hook(spawner, pod)


async def test_profile_list_shows_only_active_projects(settings, runtime, registry, kubeconfig):
    alice = make_spawner(settings, "alice", ["alpha-study", "beta-study"], "beta-study")
    assert [p["slug"] for p in alice.profile_list(alice)] == ["beta-study"]
    unnamed = make_spawner(settings, "alice", ["alpha-study", "beta-study"], "")  # not a workspace
    assert unnamed.profile_list(unnamed) == []
    carol = make_spawner(settings, "carol", ["alpha-study"], "alpha-study")
    assert carol.profile_list(carol) == []
    limits = alice.profile_list(alice)[0]["kubespawner_override"]
    assert limits["cpu_limit"] == 4.0 and limits["mem_limit"] == "8192M"


# ---- hub scopes and roles (the hub and gateway running them: test_gateway_hub.py) -----------------
def hub_config(settings, services=("dask-gateway", "airlock"), load_roles=None) -> Config:
    c = z2jh_hub_config()
    c.JupyterHub.services = [{"name": s, "api_token": "x" * 32} for s in services]
    if load_roles is not None:
        c.JupyterHub.load_roles = load_roles
    configure(c, settings=settings, k8s=K8sConfig())
    return c


async def test_server_token_gets_default_scopes_plus_the_gateway(settings, runtime, registry, kubeconfig):
    from jupyterhub.roles import get_default_roles

    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    default = next(r["scopes"] for r in get_default_roles() if r["name"] == "server")
    assert set(spawner.server_token_scopes) - set(default) == {"access:services!service=dask-gateway"}
    assert set(default) <= set(spawner.server_token_scopes)


async def test_roles_name_no_user(settings, runtime, registry):
    """Members added after the hub started get the same access: no role lists registry users."""
    registry.upsert_user("admin", "alice", email="alice@example.org", is_admin=True)
    roles = {r["name"]: r for r in hub_config(settings).JupyterHub.load_roles}
    assert set(roles) == {"user", ADMIN_ROLE, "admin", "airlock-service", "pds-watcher", "pds-gateway"}
    # the gateway reads the groups of a workspace's person (a workspace user holds none) and whether
    # the workspace runs (its clusters stop with it), nothing else
    assert roles["pds-gateway"]["scopes"] == ["read:users:groups", "read:servers"]
    assert roles["pds-gateway"]["services"] == ["dask-gateway"]
    # the membership watcher's service: stops servers, lists nobody (tests/security/test_k8s_membership_watcher.py)
    assert roles["pds-watcher"]["scopes"] == ["admin:servers"] and roles["pds-watcher"]["services"] == ["pds-watcher"]
    assert roles["user"]["scopes"] == ["self", "access:services!service=dask-gateway",
                                       "access:services!service=airlock"]
    assert "users" not in roles["user"]  # JupyterHub keeps its default: every user
    assert roles[ADMIN_ROLE]["groups"] == [ADMIN_GROUP] and "users" not in roles[ADMIN_ROLE]
    # ADMIN_SCOPES but admin:users, whose admin:auth_state would show the identity provider's tokens
    assert roles[ADMIN_ROLE]["scopes"] == K8S_ADMIN_SCOPES and "admin:users" not in K8S_ADMIN_SCOPES
    assert set(K8S_ADMIN_SCOPES) - {"users", "read:roles:users", "delete:users"} == set(ADMIN_SCOPES) - {"admin:users"}
    assert roles["admin"]["users"] == []  # nobody is JupyterHub's built-in admin
    assert roles["airlock-service"]["services"] == ["airlock"]
    alone = {r["name"]: r for r in hub_config(settings, services=()).JupyterHub.load_roles}
    assert alone["user"]["scopes"] == ["self"] and "airlock-service" not in alone and "pds-gateway" not in alone


async def test_chart_roles_are_kept_but_may_not_replace_ours(settings, runtime, registry):
    culler = {"name": "jupyterhub-idle-culler", "scopes": ["list:users"], "services": ["culler"]}
    roles = hub_config(settings, load_roles=[culler]).JupyterHub.load_roles
    assert roles[0] == culler
    for name in ("user", "admin", ADMIN_ROLE, "pds-watcher", "pds-gateway"):
        with pytest.raises(InvalidInput, match=name):
            hub_config(settings, load_roles=[{"name": name, "scopes": ["admin:users"]}])
    with pytest.raises(InvalidInput, match="pds-watcher"):  # nor its service, whose token stops servers
        hub_config(settings, services=("dask-gateway", "pds-watcher"))


async def test_gpu_projects_get_the_gpu_image(settings, runtime, registry, kubeconfig):
    """workspace.gpu.image (images/notebook-gpu) for a project granted a GPU, only when GPUs are on."""
    gpu_image = "registry.example.org/pds/notebook-gpu:0.1.0"
    k8s = K8sConfig(gpu=Gpu(enabled=True, image=gpu_image))
    beta = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study", "beta-study"], "beta-study", k8s=k8s))
    assert beta["spec"]["containers"][0]["image"] == gpu_image
    alpha = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study", "beta-study"], "alpha-study", k8s=k8s))
    assert alpha["spec"]["containers"][0]["image"] == K8sConfig().notebook_image  # no GPU granted
    off = K8sConfig(gpu=Gpu(enabled=False, image=gpu_image))
    beta_off = await spawn_manifest(make_spawner(settings, "alice", ["alpha-study", "beta-study"], "beta-study", k8s=off))
    assert beta_off["spec"]["containers"][0]["image"] == K8sConfig().notebook_image


# ---- waiting for the pod: a failed verify-extract container ends the spawn ------------------------
async def test_the_hub_spawns_with_the_pds_kubespawner(settings, runtime, registry, kubeconfig):
    """configure() makes PdsKubeSpawner the hub's spawner, with the hub's context for its audit, and
    KubeSpawner's start still waits for the pod through ``is_pod_running``, the method it overrides."""
    import inspect

    from kubespawner import KubeSpawner

    c = z2jh_hub_config()
    context = configure(c, settings=settings, k8s=K8sConfig())
    assert c.JupyterHub.spawner_class is PdsKubeSpawner and issubclass(PdsKubeSpawner, KubeSpawner)
    spawner = PdsKubeSpawner(_mock=True, config=c, user=FakeUser("alice@alpha-study", []), hub=FakeHub(),
                             orm_spawner=FakeOrmSpawner("alpha-study"))
    assert spawner.context is context
    assert "self.is_pod_running(self.pod_reflector.pods.get(ref_key" in inspect.getsource(KubeSpawner._start)


@pytest.mark.parametrize("init_state,notebook_state,phase,running", [
    ("running", "waiting", "Pending", False),  # still checking
    ("done", "running", "Running", True),  # checked, notebook ready
])
async def test_a_pod_still_checking_or_checked_is_not_refused(settings, runtime, registry, kubeconfig,
                                                              init_state, notebook_state, phase, running):
    from .api_stand_in import container_status, pod_json, terminated, waiting
    from .api_stand_in import running as running_state

    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    states = {"running": running_state(), "done": terminated(0, reason="Completed"),
              "waiting": waiting("PodInitializing")}
    pod = pod_json(spawner.pod_name, "pds", phase, [container_status("verify-extract", states[init_state])],
                   [container_status("notebook", states[notebook_state], ready=running)],
                   pod_ip="10.0.0.7" if running else None)
    assert spawner.is_pod_running(pod) is running
    assert not [e for e in AuditTrail(runtime.sessions).entries() if e.action == "extract.mount_refused"]


async def test_a_running_servers_poll_is_never_a_refusal(settings, runtime, registry, kubeconfig):
    """KubeSpawner's poll asks ``is_pod_running`` of a running server too: a notebook that exited on
    a changed extract after a restart is then only not running; the refusal belongs to a spawn."""
    from .api_stand_in import container_status, pod_json, terminated, waiting

    spawner = make_spawner(settings, "alice", ["alpha-study"], "alpha-study")
    assert spawner.pending is None
    refused = terminated(3, "the project's extract is refused: the extract mounted in the notebook is not the one "
                            "its pod's verify-extract container checked (it changed in between)")
    pod = pod_json(spawner.pod_name, "pds", "Running", [container_status("verify-extract", terminated(0))],
                   [container_status("notebook", waiting("CrashLoopBackOff"), last_state=refused, restarts=1)],
                   pod_ip="10.0.0.7")
    assert spawner.is_pod_running(pod) is False
    assert not [e for e in AuditTrail(runtime.sessions).entries() if e.action == "extract.mount_refused"]


async def test_an_account_named_before_the_label_rule_is_told_what_to_do(settings, runtime, registry, kubeconfig):
    """A user named by the earlier rule (``bob-``: not a Kubernetes label value) gets a refusal that
    says what an administrator does, audited, instead of the API's rejection of the pod; the
    gateway's worker pods are refused the same way."""
    from pds_kernel.db import transaction
    from pds_kernel.k8s.pods import build_labels
    from pds_kernel.registry.models import User

    with transaction(registry._sessions) as s:  # the row as the release before the rule wrote it
        s.add(User(name="bob-", full_name="", email="", is_admin=False, active=True))
    registry.add_member("admin", "alpha-study", "bob-", "researcher", registry.get_project("alpha-study").end_date)
    spawner = make_spawner(settings, "bob-", ["alpha-study"], "alpha-study")
    with pytest.raises(web.HTTPError) as err:
        spawner.run_pre_spawn_hook()
    assert err.value.status_code == 403
    assert "ends in '-'" in err.value.log_message and "pds project add-user NEW-NAME" in err.value.log_message
    refused = [e for e in denied(runtime) if e.action == "workspace.refused"]
    assert refused and refused[-1].actor == "bob-" and "Kubernetes label" in refused[-1].details["reason"]
    pod = await spawner.get_pod_manifest()
    with pytest.raises(web.HTTPError):  # the last word refuses too, without the pre-spawn hook
        await spawner.modify_pod_hook(spawner, pod)
    spec = authorised_workspace_spec(settings, registry, "bob-", "alpha-study", groups={"alpha-study"})
    with pytest.raises(InvalidInput, match="Kubernetes label"):
        build_labels(spec, "dask-worker")
