"""The single-node cluster's add-ons, reconciled once a second until killed (tests/deploy/cluster/start.sh runs it).

- Cluster DNS, as kube-dns answers it: `<service>.<namespace>.svc.cluster.local` is the Service's cluster IP, or
  for a headless Service its endpoints' addresses; an endpoint with a hostname (a pod with `hostname` and
  `subdomain` set, such as an Indexed Job's) is also `<hostname>.<service>.<namespace>.svc.cluster.local`.
  Written as a hosts file that dnsmasq serves (reloaded with SIGHUP when it changes).
- Pod Security: each namespace's `pod-security.kubernetes.io/enforce` level (privileged when unlabelled) bound
  to the PodSecurityPolicy of that level (psp.yaml) for the namespace's service accounts.

    python tests/deploy/cluster/addons.py RUNDIR     (RUNDIR/kubeconfig, RUNDIR/dns/hosts, RUNDIR/dnsmasq.pid)
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

DOMAIN = "cluster.local"
LEVELS = ("privileged", "baseline", "restricted")
ENFORCE = "pod-security.kubernetes.io/enforce"


def dns_records(core: client.CoreV1Api) -> list[tuple[str, str]]:
    """(ip, name) for every Service and every named endpoint, sorted."""
    endpoints = {(e.metadata.namespace, e.metadata.name): e for e in core.list_endpoints_for_all_namespaces().items}
    records = set()
    for svc in core.list_service_for_all_namespaces().items:
        ns, name = svc.metadata.namespace, svc.metadata.name
        fqdn = f"{name}.{ns}.svc.{DOMAIN}"
        if svc.spec.cluster_ip and svc.spec.cluster_ip != "None":
            records.add((svc.spec.cluster_ip, fqdn))
        ep = endpoints.get((ns, name))
        for subset in (ep.subsets or []) if ep else []:
            for address in subset.addresses or []:
                if svc.spec.cluster_ip == "None":
                    records.add((address.ip, fqdn))
                if address.hostname:
                    records.add((address.ip, f"{address.hostname}.{fqdn}"))
    return sorted(records)


def bind_pod_security(core: client.CoreV1Api, rbac: client.RbacAuthorizationV1Api) -> None:
    for ns in core.list_namespace().items:
        name = ns.metadata.name
        if ns.status.phase == "Terminating":
            continue
        level = (ns.metadata.labels or {}).get(ENFORCE, "privileged")
        level = level if level in LEVELS else "restricted"  # an unknown level: the strictest, never the loosest
        role = f"pod-security:{level}"
        try:
            current = rbac.read_namespaced_role_binding("pod-security", name)
        except ApiException as e:
            if e.status != 404:
                raise
            current = None
        if current is not None and current.role_ref.name == role:
            continue
        if current is not None:  # a RoleBinding's role is immutable: replace it
            rbac.delete_namespaced_role_binding("pod-security", name)
        rbac.create_namespaced_role_binding(name, {
            "metadata": {"name": "pod-security", "labels": {ENFORCE: level}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": f"system:serviceaccounts:{name}"}],
        })
        print(f"namespace {name}: pod security {level}", flush=True)


def main(run_dir: Path) -> None:
    api = config.new_client_from_config(config_file=str(run_dir / "kubeconfig"))
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    hosts, pid_file = run_dir / "dns" / "hosts", run_dir / "dnsmasq.pid"
    written = None
    while True:
        try:
            bind_pod_security(core, rbac)
            text = "".join(f"{ip} {name}\n" for ip, name in dns_records(core))
            if text != written:
                tmp = hosts.with_suffix(".partial")
                tmp.write_text(text)
                os.replace(tmp, hosts)
                if pid_file.exists():
                    os.kill(int(pid_file.read_text()), signal.SIGHUP)
                written = text
        except Exception as e:  # noqa: BLE001 - the API server restarting, a namespace going away: next round
            print(f"addons: {type(e).__name__}: {e}", flush=True)
        time.sleep(1.0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
