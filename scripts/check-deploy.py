#!/usr/bin/env python3
"""Checks rendered Kubernetes manifests of deploy/ beyond their schema.

kubernetes-validate (run by scripts/check-deploy.sh) says each object is well formed;
this says the objects and the files in their ConfigMaps fit together, for each
rendered variant given with --rendered NAME=FILE:

1. References: every ConfigMap, Secret, PVC, volume, port name, Service selector,
   StatefulSet serviceName, PDB and HPA target resolves. Every Secret and key the pods
   use is documented in deploy/base/secrets.example.yaml.
2. Wiring: every host:port named inside a shipped configuration (Switchyard's TOML with
   each pod's SWITCHYARD__* overrides, nats.conf routes, the Collector's exporters,
   Prometheus' targets and DNS names, Grafana's data sources, Envoy's clusters) is a
   Service port or a StatefulSet pod of this render, and each file a process is told
   to read is in one of its mounts.
3. The OpenTelemetry Collector's config: every component a pipeline names is defined,
   connectors are both exported to and received from, pipeline types are known.
4. Grafana: dashboards are JSON with unique panel ids and data sources that are
   provisioned; the dashboard provider reads where the dashboards are mounted; every
   query parses (each wrapped in a recording rule for `promtool check rules`, as
   tests/e2e/observability.rs does for the source file).
5. `promtool check config` on Prometheus' config laid out as the pod mounts it.
6. With a switchyard binary: `switchyard gateway|worker --check-config` on each pod's
   file with its environment, secrets replaced by generated stand-ins
   (nats/gen-certs.sh), and the certificates' names cover the names the pods dial.
   With nats-server: `nats-server -t` on each NATS pod's config and environment.

    check-deploy.py --work DIR --rendered dev=FILE ...              the checks
    check-deploy.py --work DIR --rendered dev=FILE --self-test      break copies on purpose;
                                                                    each break must be caught
"""

import argparse
import copy
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRETS_EXAMPLE = ROOT / "deploy/base/secrets.example.yaml"
WORKLOADS = ("Deployment", "StatefulSet")
CLUSTER_DOMAIN = "cluster.local"


class Render:
    """One rendered variant: its objects, indexed."""

    def __init__(self, name, docs):
        self.name = name
        self.docs = [d for d in docs if d]
        self.by_kind = {}
        for d in self.docs:
            self.by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d

    def get(self, kind, name):
        return self.by_kind.get(kind, {}).get(name)

    def all(self, kind):
        return list(self.by_kind.get(kind, {}).values())

    def configmap_by_prefix(self, prefix):
        """The ConfigMap kustomize generated from `prefix` (name plus hash suffix)."""
        found = [
            cm
            for name, cm in self.by_kind.get("ConfigMap", {}).items()
            if re.fullmatch(re.escape(prefix) + r"(-[a-z0-9]{10})?", name)
        ]
        return found[0] if len(found) == 1 else None


def load_render(name, path):
    with open(path) as f:
        return Render(name, list(yaml.safe_load_all(f)))


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def pod_labels(workload):
    return workload["spec"]["template"]["metadata"].get("labels", {})


def namespace_of(obj):
    return obj["metadata"].get("namespace", "default")


def replicas(workload):
    return workload["spec"].get("replicas", 1)


# ---------------------------------------------------------------------------------
# 1. References


def check_references(r, example):
    problems = []

    def where(w):
        return f"{r.name}: {w['kind']} {w['metadata']['name']}"

    for w in r.all("Deployment") + r.all("StatefulSet"):
        spec = pod_spec(w)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claim_templates = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        for v in volumes.values():
            problems += check_volume(r, example, where(w), v)
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            here = f"{where(w)} container {c['name']}"
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes and m["name"] not in claim_templates:
                    problems.append(f"{here}: mounts {m['name']!r}, which is no volume")
            port_names = {p["name"] for p in c.get("ports", []) if "name" in p}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    port = c.get(probe, {}).get(kind, {}).get("port")
                    if isinstance(port, str) and port not in port_names:
                        problems.append(f"{here}: {probe} names port {port!r}, not declared")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    s = ref["secretKeyRef"]
                    problems += secret_keys(example, here, s["name"], [s["key"]])
                if "configMapKeyRef" in ref:
                    s = ref["configMapKeyRef"]
                    cm = r.get("ConfigMap", s["name"])
                    if cm is None or s["key"] not in cm.get("data", {}):
                        problems.append(
                            f"{here}: env {e['name']} reads ConfigMap {s['name']} key {s['key']}, absent"
                        )
        if w["kind"] == "StatefulSet":
            svc = r.get("Service", w["spec"]["serviceName"])
            if svc is None or svc["spec"].get("clusterIP") != "None":
                problems.append(
                    f"{where(w)}: serviceName {w['spec']['serviceName']!r} is no headless Service"
                )
        if not selects(w["spec"]["selector"].get("matchLabels", {}), pod_labels(w)):
            problems.append(f"{where(w)}: its selector does not match its own pods")
    for svc in r.all("Service"):
        sel = svc["spec"].get("selector")
        if not sel:
            continue
        pods = [
            w for w in r.all("Deployment") + r.all("StatefulSet") if selects(sel, pod_labels(w))
        ]
        if not pods:
            problems.append(f"{r.name}: Service {svc['metadata']['name']} selects no pods")
            continue
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            if not any(container_port(w, target) for w in pods):
                problems.append(
                    f"{r.name}: Service {svc['metadata']['name']} port {p.get('name', p['port'])} targets {target!r}, which its pods do not declare"
                )
    for pdb in r.all("PodDisruptionBudget"):
        sel = pdb["spec"]["selector"].get("matchLabels", {})
        if not any(selects(sel, pod_labels(w)) for w in r.all("Deployment") + r.all("StatefulSet")):
            problems.append(
                f"{r.name}: PodDisruptionBudget {pdb['metadata']['name']} selects no pods"
            )
    for hpa in r.all("HorizontalPodAutoscaler"):
        t = hpa["spec"]["scaleTargetRef"]
        target = r.get(t["kind"], t["name"])
        if target is None:
            problems.append(
                f"{r.name}: HorizontalPodAutoscaler {hpa['metadata']['name']} scales {t['kind']} {t['name']}, absent"
            )
        elif "replicas" in target["spec"]:
            problems.append(
                f"{r.name}: {t['kind']} {t['name']} sets replicas, which its autoscaler owns"
            )
        elif not all(
            "cpu" in c.get("resources", {}).get("requests", {})
            for c in pod_spec(target)["containers"]
        ):
            problems.append(f"{r.name}: {t['kind']} {t['name']} is scaled on CPU but requests none")
    return problems


def check_volume(r, example, here, v):
    problems = []
    sources = []
    if "configMap" in v:
        sources.append(("configMap", v["configMap"]))
    if "secret" in v:
        sources.append(("secret", v["secret"]))
    for s in v.get("projected", {}).get("sources", []):
        for kind in ("configMap", "secret"):
            if kind in s:
                sources.append((kind, s[kind]))
    for kind, s in sources:
        keys = [i["key"] for i in s.get("items", [])]
        if kind == "configMap":
            cm = r.get("ConfigMap", s["name"])
            if cm is None:
                problems.append(f"{here}: volume {v['name']} reads ConfigMap {s['name']}, absent")
                continue
            for k in keys:
                if k not in cm.get("data", {}):
                    problems.append(
                        f"{here}: volume {v['name']} reads key {k!r} of ConfigMap {s['name']}, absent"
                    )
        else:
            problems += secret_keys(example, f"{here} volume {v['name']}", s["secretName"], keys)
    claim = v.get("persistentVolumeClaim", {}).get("claimName")
    if claim and r.get("PersistentVolumeClaim", claim) is None:
        problems.append(
            f"{here}: volume {v['name']} claims {claim}, which is no PersistentVolumeClaim"
        )
    return problems


def secret_keys(example, here, name, keys):
    if name not in example:
        return [f"{here}: Secret {name!r} is not documented in {SECRETS_EXAMPLE.relative_to(ROOT)}"]
    return [
        f"{here}: key {k!r} of Secret {name} is not documented in {SECRETS_EXAMPLE.relative_to(ROOT)}"
        for k in keys
        if k not in example[name]
    ]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_port(workload, target):
    for c in pod_spec(workload)["containers"]:
        for p in c.get("ports", []):
            if target in (p.get("name"), p["containerPort"]):
                return True
    return False


# The Pod Security Standard "restricted" (namespace.yaml enforces it), and this
# repository's own rules on top: a read-only root and a memory limit everywhere.
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def check_security(r):
    problems = []
    for w in r.all("Deployment") + r.all("StatefulSet"):
        here = f"{r.name}: {w['kind']} {w['metadata']['name']}"
        spec = pod_spec(w)
        pod_sc = spec.get("securityContext", {})
        for v in spec.get("volumes", []):
            kinds = set(v) - {"name"}
            if not kinds <= RESTRICTED_VOLUMES:
                problems.append(f"{here}: volume {v['name']} is of a kind 'restricted' forbids")
        for sysctl in pod_sc.get("sysctls", []):
            if sysctl["name"] not in SAFE_SYSCTLS:
                problems.append(f"{here}: sysctl {sysctl['name']} is not a safe one")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{here}: shares a host namespace")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = {**pod_sc, **c.get("securityContext", {})}
            name = f"{here} container {c['name']}"
            if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") == 0:
                problems.append(f"{name}: not runAsNonRoot")
            if sc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{name}: no RuntimeDefault seccomp profile")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
                problems.append(f"{name}: capabilities are not drop [ALL]")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: root filesystem is not read-only")
            if sc.get("privileged"):
                problems.append(f"{name}: privileged")
            if any(p.get("hostPort") for p in c.get("ports", [])):
                problems.append(f"{name}: uses a hostPort")
            res = c.get("resources", {})
            if "memory" not in res.get("limits", {}) or "memory" not in res.get("requests", {}):
                problems.append(f"{name}: no memory request and limit")
            if "cpu" not in res.get("requests", {}):
                problems.append(f"{name}: no CPU request")
    return problems


# ---------------------------------------------------------------------------------
# 2. Wiring: names and ports inside the shipped configurations


def resolve(r, ns, host, port, srv=False):
    """None if host:port reaches something of this render, else why not."""
    if host in ("localhost", "127.0.0.1", "0.0.0.0", "::1"):
        return None
    labels = host.rstrip(".").split(".")
    suffixes = [[], [ns], [ns, "svc"], [ns, "svc"] + CLUSTER_DOMAIN.split(".")]
    if srv:
        if len(labels) < 3 or not labels[0].startswith("_") or labels[1] != "_tcp":
            return f"{host}: not an SRV name _port._tcp.service..."
        port_name, rest = labels[0][1:], labels[2:]
        if rest[1:] not in suffixes:
            return f"{host}: not a name of namespace {ns}"
        svc = r.get("Service", rest[0])
        if svc is None:
            return f"{host}: no Service {rest[0]}"
        if svc["spec"].get("clusterIP") != "None":
            return f"{host}: Service {rest[0]} is not headless (its SRV targets are no pods)"
        if not any(p.get("name") == port_name for p in svc["spec"]["ports"]):
            return f"{host}: Service {rest[0]} has no port named {port_name}"
        return None
    # A Service: name, name.ns, name.ns.svc, name.ns.svc.cluster.local.
    if labels[1:] in suffixes:
        svc = r.get("Service", labels[0])
        if svc is None:
            return f"{host}:{port}: no Service {labels[0]}"
        if not any(p["port"] == port for p in svc["spec"]["ports"]):
            return f"{host}:{port}: Service {labels[0]} has no port {port}"
        return None
    # A StatefulSet's pod: pod.service.ns.svc[.cluster.local].
    if len(labels) >= 2 and labels[2:] in suffixes[1:]:
        pod, service = labels[0], labels[1]
        for sts in r.all("StatefulSet"):
            m = re.fullmatch(re.escape(sts["metadata"]["name"]) + r"-(\d+)", pod)
            if m and sts["spec"]["serviceName"] == service:
                if int(m.group(1)) >= replicas(sts):
                    return f"{host}:{port}: StatefulSet {sts['metadata']['name']} has {replicas(sts)} replica(s), no {pod}"
                if not container_port(sts, port):
                    return f"{host}:{port}: {pod} declares no port {port}"
                return None
        return f"{host}:{port}: no StatefulSet pod {pod} behind Service {service}"
    return f"{host}:{port}: not a name of this render (namespace {ns})"


def split_host_port(text, default_port=None):
    text = re.sub(r"^[a-z+-]+://", "", text.strip()).split("/")[0]
    if ":" in text:
        host, port = text.rsplit(":", 1)
        return host, int(port)
    return text, default_port


def expand_env(value, env):
    return re.sub(
        r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value
    )


def pod_env(w, container, index):
    """The container's environment in pod number `index`, as the kubelet builds it
    (a Deployment's pods get a made-up name of the same shape as theirs)."""
    if w["kind"] == "StatefulSet":
        pod = f"{w['metadata']['name']}-{index}"
    else:
        pod = f"{w['metadata']['name']}-5d8f9c7b6-x2x4q"
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = expand_env(e["value"], env)
        else:
            field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field == "metadata.name":
                env[e["name"]] = pod
            elif field == "metadata.namespace":
                env[e["name"]] = namespace_of(w)
    return env


def pods(w):
    """(index, container) for each replica of the workload's first container."""
    return [(i, pod_spec(w)["containers"][0]) for i in range(max(replicas(w), 1))]


def switchyard_config(r, w, container, env):
    """The role file a switchyard container reads, with its SWITCHYARD__* overrides."""
    args = container.get("args", [])
    path = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
    text = mounted_file(r, w, container, path) if path else None
    if text is None:
        return None, path
    table = toml_loads(text)
    for name, value in env.items():
        if not name.startswith("SWITCHYARD__"):
            continue
        keys = [k.lower() for k in name[len("SWITCHYARD__") :].split("__")]
        try:
            parsed = toml_loads(f"v = {value}")["v"]
        except Exception:  # noqa: BLE001 - the binary takes any unparsable value as a string
            parsed = value
        at = table
        for k in keys[:-1]:
            at = at.setdefault(k, {})
        at[keys[-1]] = parsed
    return table, path


def toml_loads(text):
    import tomllib

    return tomllib.loads(text)


def mounted_file(r, w, container, path):
    """The text of `path` in the container, when a ConfigMap mount provides it."""
    volumes = {v["name"]: v for v in pod_spec(w).get("volumes", [])}
    for m in container.get("volumeMounts", []):
        prefix = m["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        for kind, source in volume_sources(volumes.get(m["name"], {})):
            if kind != "configMap":
                continue
            cm = r.get("ConfigMap", source["name"])
            if cm is None:
                continue
            files = {i["path"]: i["key"] for i in source.get("items", [])} or {
                k: k for k in cm["data"]
            }
            key = files.get(path[len(prefix) :])
            if key is not None:
                return cm["data"][key]
    return None


def volume_sources(v):
    out = []
    for kind in ("configMap", "secret"):
        if kind in v:
            out.append((kind, v[kind]))
    for s in v.get("projected", {}).get("sources", []):
        for kind in ("configMap", "secret"):
            if kind in s:
                out.append((kind, s[kind]))
    return out


def is_mounted(w, container, path):
    return any(
        path.startswith(m["mountPath"].rstrip("/") + "/") for m in container.get("volumeMounts", [])
    )


def switchyard_workloads(r):
    return [
        w
        for w in r.all("Deployment") + r.all("StatefulSet")
        if pod_spec(w)["containers"][0]["image"].split("/")[-1].startswith("switchyard")
    ]


def file_paths(table, prefix=""):
    """Every string value of a config whose key names a file."""
    out = []
    for k, v in table.items():
        if isinstance(v, dict):
            out += file_paths(v, f"{prefix}{k}.")
        elif isinstance(v, str) and (
            k.endswith("_file") or k in ("cert", "key", "ca", "client_ca")
        ):
            out.append((prefix + k, v))
    return out


def check_wiring(r):
    problems = []

    def need(where, ns, host, port, srv=False):
        why = resolve(r, ns, host, port, srv)
        if why:
            problems.append(f"{r.name}: {where}: {why}")

    # Switchyard's gateways and workers, pod by pod.
    for w in switchyard_workloads(r):
        ns = namespace_of(w)
        for index, c in pods(w):
            env = pod_env(w, c, index)
            table, path = switchyard_config(r, w, c, env)
            here = f"{w['kind']} {w['metadata']['name']} pod {index}"
            if table is None:
                problems.append(
                    f"{r.name}: {here}: --config {path} is in none of its ConfigMap mounts"
                )
                continue
            for url in table.get("nats", {}).get("url", "").split(","):
                need(f"{here} nats.url", ns, *split_host_port(url, 4222))
            endpoint = table.get("telemetry", {}).get("otlp_endpoint")
            if endpoint:
                need(f"{here} telemetry.otlp_endpoint", ns, *split_host_port(endpoint))
            advertise = table.get("worker", {}).get("advertise")
            if advertise:
                need(f"{here} worker.advertise", ns, *split_host_port(advertise))
                if table["worker"].get("id") != f"{w['metadata']['name']}-{index}":
                    problems.append(
                        f"{r.name}: {here}: worker.id is {table['worker'].get('id')!r}, not its pod name"
                    )
            for key, file in file_paths(table):
                if not is_mounted(w, c, file):
                    problems.append(f"{r.name}: {here}: {key} = {file} is in none of its mounts")
            if table.get("admin_listen") and not container_port(
                w, int(table["admin_listen"].rsplit(":", 1)[1])
            ):
                problems.append(f"{r.name}: {here}: admin_listen's port is not declared")

    # NATS routes.
    for w in r.all("StatefulSet"):
        c = pod_spec(w)["containers"][0]
        if not c["image"].startswith("nats:"):
            continue
        conf = mounted_file(r, w, c, "/etc/nats/config/nats.conf")
        if conf is None:
            problems.append(
                f"{r.name}: StatefulSet {w['metadata']['name']}: /etc/nats/config/nats.conf is not mounted"
            )
            continue
        for url in re.findall(r'"nats-route://([^"]+)"', conf):
            need("nats.conf route", namespace_of(w), *split_host_port(url))

    ns = r.all("Namespace")[0]["metadata"]["name"] if r.all("Namespace") else "default"
    # The Collector's exporters.
    collector = r.configmap_by_prefix("otel-collector-config")
    if collector:
        config = yaml.safe_load(collector["data"]["otel-collector.yaml"])
        for name, exporter in (config.get("exporters") or {}).items():
            endpoint = (exporter or {}).get("endpoint", "")
            if endpoint and not endpoint.startswith("0.0.0.0"):
                need(f"otel-collector exporter {name}", ns, *split_host_port(endpoint))
    # Prometheus' targets.
    prom = r.configmap_by_prefix("prometheus-config")
    if prom:
        config = yaml.safe_load(prom["data"]["prometheus.yml"])
        for job in config.get("scrape_configs", []):
            for sc in job.get("static_configs", []):
                for t in sc.get("targets", []):
                    need(f"prometheus job {job['job_name']}", ns, *split_host_port(t))
            for sd in job.get("dns_sd_configs", []):
                for n in sd["names"]:
                    if sd.get("type", "SRV") == "SRV":
                        need(f"prometheus job {job['job_name']}", ns, n, None, srv=True)
                    else:
                        need(f"prometheus job {job['job_name']}", ns, n, sd["port"])
    # Grafana's data sources.
    ds = r.configmap_by_prefix("grafana-datasources")
    if ds:
        for f in ds["data"].values():
            for d in yaml.safe_load(f).get("datasources", []):
                need(f"grafana data source {d['name']}", ns, *split_host_port(d["url"], 80))
    # Envoy's clusters (in every bootstrap the ConfigMap holds).
    envoy = r.configmap_by_prefix("envoy-config")
    if envoy:
        for key, text in envoy["data"].items():
            boot = yaml.safe_load(text)
            for cl in boot.get("static_resources", {}).get("clusters", []):
                for ep in cl.get("load_assignment", {}).get("endpoints", []):
                    for lb in ep.get("lb_endpoints", []):
                        a = lb["endpoint"]["address"]["socket_address"]
                        need(f"envoy {key} cluster {cl['name']}", ns, a["address"], a["port_value"])
    # Files that processes are told to read.
    for w in r.all("Deployment") + r.all("StatefulSet"):
        for c in pod_spec(w)["containers"]:
            for a in c.get("args", []):
                m = re.fullmatch(r"--(?:config|config\.file|config-path)=(/.+)", a)
                path = m.group(1) if m else None
                if path is None and a.startswith("/etc/"):
                    path = a
                if path and mounted_file(r, w, c, path) is None:
                    problems.append(
                        f"{r.name}: {w['kind']} {w['metadata']['name']}: {path} is in none of its ConfigMap mounts"
                    )
            prev = None
            for a in c.get("args", []):
                if prev == "--config" and mounted_file(r, w, c, a) is None:
                    problems.append(
                        f"{r.name}: {w['kind']} {w['metadata']['name']}: {a} is in none of its ConfigMap mounts"
                    )
                prev = a
    return problems


# ---------------------------------------------------------------------------------
# 3. The OpenTelemetry Collector


def check_collector(name, config):
    problems = []
    kinds = ("receivers", "processors", "exporters", "connectors", "extensions")
    defined = {k: set((config.get(k) or {}).keys()) for k in kinds}
    service = config.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append(f"{name}: service.pipelines is empty")
    for ext in service.get("extensions", []):
        if ext not in defined["extensions"]:
            problems.append(
                f"{name}: service.extensions names {ext!r}, not defined under extensions"
            )
    exported_connectors, received_connectors = set(), set()
    for pname, p in pipelines.items():
        ptype = pname.split("/")[0]
        if ptype not in ("traces", "metrics", "logs", "profiles"):
            problems.append(f"{name}: pipeline {pname!r}: unknown signal {ptype!r}")
        if not p.get("receivers"):
            problems.append(f"{name}: pipeline {pname!r} has no receivers")
        if not p.get("exporters"):
            problems.append(f"{name}: pipeline {pname!r} has no exporters")
        for r in p.get("receivers", []):
            if r in defined["connectors"]:
                received_connectors.add(r)
            elif r not in defined["receivers"]:
                problems.append(
                    f"{name}: pipeline {pname!r} receives from {r!r}, defined neither as a receiver nor a connector"
                )
        for pr in p.get("processors", []):
            if pr not in defined["processors"]:
                problems.append(f"{name}: pipeline {pname!r} names processor {pr!r}, not defined")
        for e in p.get("exporters", []):
            if e in defined["connectors"]:
                exported_connectors.add(e)
            elif e not in defined["exporters"]:
                problems.append(
                    f"{name}: pipeline {pname!r} exports to {e!r}, defined neither as an exporter nor a connector"
                )
    for c in defined["connectors"]:
        if (c in exported_connectors) != (c in received_connectors):
            problems.append(
                f"{name}: connector {c!r} must be an exporter of one pipeline and a receiver of another"
            )
    return problems


# ---------------------------------------------------------------------------------
# 4. Grafana


def dashboard_queries(name, dashboard, datasource_uids):
    """(problems, [expr]) of one dashboard, as tests/e2e/observability.rs reads it."""
    problems, exprs, ids = [], [], set()
    for panel in dashboard.get("panels", []):
        if panel.get("id") in ids:
            problems.append(f"{name}: panel id {panel.get('id')} is not unique")
        ids.add(panel.get("id"))
        if panel.get("type") == "row":
            continue
        uid = (panel.get("datasource") or {}).get("uid")
        if uid not in datasource_uids:
            problems.append(
                f"{name}: panel {panel.get('title')!r} uses data source {uid!r}, not provisioned"
            )
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{name}: panel {panel.get('title')!r} has no query")
        for t in targets:
            if not t.get("expr"):
                problems.append(f"{name}: panel {panel.get('title')!r} has a target without expr")
            else:
                exprs.append(t["expr"])
    return problems, exprs


def check_grafana(r, work, promtool):
    problems = []
    ds = r.configmap_by_prefix("grafana-datasources")
    providers = r.configmap_by_prefix("grafana-dashboard-providers")
    dashboards = r.configmap_by_prefix("grafana-dashboards")
    grafana = r.get("Deployment", "grafana")
    if not (ds and providers and dashboards and grafana):
        return [
            f"{r.name}: Grafana, its data sources, dashboard providers or dashboards are missing"
        ], 0
    uids = set()
    for text in ds["data"].values():
        uids |= {d.get("uid") for d in yaml.safe_load(text).get("datasources", [])}
    mounts = {}
    c = pod_spec(grafana)["containers"][0]
    volumes = {v["name"]: v for v in pod_spec(grafana)["volumes"]}
    for m in c["volumeMounts"]:
        cm = volumes[m["name"]].get("configMap", {}).get("name")
        mounts[cm] = m["mountPath"]
    for text in providers["data"].values():
        for p in yaml.safe_load(text).get("providers", []):
            path = p.get("options", {}).get("path")
            if path != mounts.get(dashboards["metadata"]["name"]):
                problems.append(
                    f"{r.name}: dashboard provider {p['name']} reads {path}, but the dashboards are mounted at {mounts.get(dashboards['metadata']['name'])}"
                )
    exprs = []
    for key, text in dashboards["data"].items():
        try:
            dashboard = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(f"{r.name}: dashboard {key} is not JSON: {e}")
            continue
        p, e = dashboard_queries(f"{r.name}: dashboard {key}", dashboard, uids)
        problems += p
        exprs += e
    if exprs and promtool:
        rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [
                        {
                            "record": f"dashboard_query_{i}",
                            "expr": e.replace("$__rate_interval", "1m"),
                        }
                        for i, e in enumerate(exprs)
                    ],
                }
            ]
        }
        f = work / f"{r.name}-dashboard.rules.yml"
        f.write_text(yaml.safe_dump(rules, sort_keys=False))
        out = run([promtool, "check", "rules", str(f)])
        if out.returncode != 0:
            problems.append(
                f"{r.name}: a dashboard query does not parse (promtool check rules):\n{out.stdout}{out.stderr}"
            )
    return problems, len(exprs)


# ---------------------------------------------------------------------------------
# 5. Prometheus


def check_prometheus(r, work, promtool):
    prom = r.get("Deployment", "prometheus")
    if prom is None:
        return [f"{r.name}: no Prometheus"]
    c = pod_spec(prom)["containers"][0]
    config_path = next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--config.file="))
    root = work / f"{r.name}-prometheus"
    shutil.rmtree(root, ignore_errors=True)
    volumes = {v["name"]: v for v in pod_spec(prom)["volumes"]}
    for m in c["volumeMounts"]:
        for kind, source in volume_sources(volumes[m["name"]]):
            if kind != "configMap":
                continue
            cm = r.get("ConfigMap", source["name"])
            files = {i["path"]: i["key"] for i in source.get("items", [])} or {
                k: k for k in cm["data"]
            }
            for path, key in files.items():
                dest = root / m["mountPath"].lstrip("/") / path
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(cm["data"][key])
    config = root / config_path.lstrip("/")
    if not config.exists():
        return [f"{r.name}: Prometheus' {config_path} is not mounted"]
    out = run([promtool, "check", "config", str(config)])
    if out.returncode != 0:
        return [f"{r.name}: promtool check config {config_path}:\n{out.stdout}{out.stderr}"]
    return []


# ---------------------------------------------------------------------------------
# 6. The binaries on the rendered files


class FakeSecrets:
    """Stand-in Secret contents: certificates from nats/gen-certs.sh, random lines."""

    def __init__(self, work):
        self.dir = work / "certs"
        if not (self.dir / "handoff-gateway-key.pem").exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            out = run(["sh", str(ROOT / "nats/gen-certs.sh"), str(self.dir)])
            if out.returncode != 0:
                raise SystemExit(f"nats/gen-certs.sh failed:\n{out.stdout}{out.stderr}")

    def content(self, key):
        aliases = {"tls.crt": "server.pem", "tls.key": "server-key.pem", "ca.crt": "ca.pem"}
        f = self.dir / aliases.get(key, key)
        if f.exists():
            return f.read_bytes()
        return (secrets.token_urlsafe(32) + "\n").encode()

    def sans(self, name):
        out = run(
            ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(self.dir / name)]
        )
        return re.findall(r"DNS:([^,\s]+)", out.stdout)


def lay_out(r, w, c, root, fake, example):
    """Writes the container's mounts under `root`; returns {mountPath: local dir}."""
    volumes = {v["name"]: v for v in pod_spec(w).get("volumes", [])}
    mapping = {}
    for m in c.get("volumeMounts", []):
        local = root / m["mountPath"].lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        mapping[m["mountPath"].rstrip("/")] = local
        for kind, source in volume_sources(volumes.get(m["name"], {})):
            if kind == "configMap":
                data = r.get("ConfigMap", source["name"])["data"]
                files = {i["path"]: i["key"] for i in source.get("items", [])} or {
                    k: k for k in data
                }
                for path, key in files.items():
                    (local / path).parent.mkdir(parents=True, exist_ok=True)
                    (local / path).write_text(data[key])
            else:
                keys = example.get(source["secretName"], {})
                files = {i["path"]: i["key"] for i in source.get("items", [])} or {
                    k: k for k in keys
                }
                for path, key in files.items():
                    (local / path).parent.mkdir(parents=True, exist_ok=True)
                    (local / path).write_bytes(fake.content(key))
    return mapping


def relocate(text, mapping):
    for mount in sorted(mapping, key=len, reverse=True):
        text = text.replace(mount + "/", str(mapping[mount]) + "/")
    return text


def check_binaries(r, work, fake, example, switchyard, nats_server, nats_version):
    problems, ran = [], []
    for w in switchyard_workloads(r) if switchyard else []:
        role = pod_spec(w)["containers"][0]["args"][0]
        for index, c in pods(w)[:2]:
            root = work / f"{r.name}-{w['metadata']['name']}-{index}"
            shutil.rmtree(root, ignore_errors=True)
            mapping = lay_out(r, w, c, root, fake, example)
            config = next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--config="))
            local_config = Path(relocate(config, mapping))
            if not local_config.exists():
                continue  # reported by check_wiring
            local_config.write_text(relocate(local_config.read_text(), mapping))
            env = {k: relocate(v, mapping) for k, v in pod_env(w, c, index).items()}
            out = run(
                [switchyard, role, "--check-config", "--config", str(local_config)],
                env={**minimal_env(), **env},
            )
            ran.append(f"switchyard {role} --check-config ({w['metadata']['name']} pod {index})")
            if out.returncode != 0:
                problems.append(
                    f"{r.name}: {w['kind']} {w['metadata']['name']} pod {index}: switchyard {role} --check-config refused {config}:\n{out.stdout}{out.stderr}"
                )
        # The names gateways and workers dial must be on the certificates.
        for index, c in pods(w):
            table, _ = switchyard_config(r, w, c, pod_env(w, c, index))
            if table is None:
                continue  # reported by check_wiring
            hosts = [
                split_host_port(u, 4222)[0]
                for u in table.get("nats", {}).get("url", "").split(",")
                if u
            ]
            for h in hosts:
                if not matches_san(h, fake.sans("server.pem")):
                    problems.append(
                        f"{r.name}: nats.url host {h} is not on the NATS certificate of nats/gen-certs.sh ({', '.join(fake.sans('server.pem'))})"
                    )
            adv = table.get("worker", {}).get("advertise")
            if adv and not matches_san(split_host_port(adv)[0], fake.sans("handoff-worker.pem")):
                problems.append(
                    f"{r.name}: worker.advertise {adv} is not on the hand-off certificate of nats/gen-certs.sh"
                )
    for w in r.all("StatefulSet") if nats_server else []:
        c = pod_spec(w)["containers"][0]
        if not c["image"].startswith("nats:"):
            continue
        for index, c in pods(w)[:1]:
            root = work / f"{r.name}-{w['metadata']['name']}-{index}"
            shutil.rmtree(root, ignore_errors=True)
            mapping = lay_out(r, w, c, root, fake, example)
            for t in w["spec"].get("volumeClaimTemplates", []):
                for m in c["volumeMounts"]:
                    if m["name"] == t["metadata"]["name"]:
                        mapping[m["mountPath"].rstrip("/")] = root / m["mountPath"].lstrip("/")
            config_dir = mapping.get("/etc/nats/config")
            if config_dir is None or not (config_dir / "nats.conf").exists():
                continue  # reported by check_wiring
            for f in config_dir.iterdir():
                text = relocate(f.read_text(), mapping)
                if nats_version < (2, 10):
                    text = "\n".join(
                        line
                        for line in text.splitlines()
                        if not line.strip().startswith("sync_interval:")
                    )
                f.write_text(text)
            env = pod_env(w, c, index)
            out = run(
                [nats_server, "-t", "-c", str(config_dir / "nats.conf")],
                env={**minimal_env(), **env},
            )
            ran.append(f"nats-server -t ({w['metadata']['name']} pod {index})")
            if out.returncode != 0:
                problems.append(
                    f"{r.name}: StatefulSet {w['metadata']['name']}: nats-server -t refused nats.conf:\n{out.stdout}{out.stderr}"
                )
    return problems, ran


def matches_san(host, sans):
    for san in sans:
        if san == host:
            return True
        if san.startswith("*.") and "." in host and host.split(".", 1)[1] == san[2:]:
            return True
    return False


def minimal_env():
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SWITCHYARD_LOG": "warn"}


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


# ---------------------------------------------------------------------------------


def load_example():
    out = {}
    for d in yaml.safe_load_all(SECRETS_EXAMPLE.read_text()):
        if d and d.get("kind") == "Secret":
            out[d["metadata"]["name"]] = set((d.get("stringData") or {}).keys()) | set(
                (d.get("data") or {}).keys()
            )
    return out


def check_render(r, args, example, fake, report=True):
    work = args.work
    problems = check_references(r, example) + check_security(r) + check_wiring(r)
    collector = r.configmap_by_prefix("otel-collector-config")
    if collector is None:
        problems.append(f"{r.name}: no otel-collector-config ConfigMap")
    else:
        for key, text in collector["data"].items():
            problems += check_collector(f"{r.name}: {key}", yaml.safe_load(text))
    grafana, queries = check_grafana(r, work, args.promtool)
    problems += grafana
    if args.promtool:
        problems += check_prometheus(r, work, args.promtool)
    bins, ran = check_binaries(
        r, work, fake, example, args.switchyard, args.nats_server, args.nats_version
    )
    problems += bins
    if report:
        print(
            f"check-deploy: {r.name}: {len(r.docs)} objects; references, pod security, wiring, "
            "Collector pipelines, "
            f"{queries} dashboard queries"
            + (", Prometheus config" if args.promtool else "")
            + "".join(f"; {x}" for x in ran)
        )
    return problems


# Each break: (what, function that breaks a copy of the render). The checks must catch all.
def breaks():
    def configmap(r, prefix):
        return r.configmap_by_prefix(prefix)

    def b_mount(r):
        r.get("StatefulSet", "worker")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][
            0
        ]["name"] = "confg"

    def b_service(r):
        r.get("Service", "workers")["spec"]["ports"][0]["targetPort"] = "handof"

    def b_nats_url(r):
        cm = configmap(r, "switchyard-gateway-config")
        cm["data"]["gateway.toml"] = cm["data"]["gateway.toml"].replace(
            "nats-0.nats.", "nats-9.nats."
        )
        env = r.get("Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0].get(
            "env", []
        )
        for e in env:
            if e["name"] == "SWITCHYARD__NATS__URL":
                e["value"] = e["value"].replace("nats-0.nats.", "nats-9.nats.")

    def b_collector(r):
        cm = configmap(r, "otel-collector-config")
        cm["data"]["otel-collector.yaml"] = cm["data"]["otel-collector.yaml"].replace(
            "exporters: [otlp/jaeger, spanmetrics]", "exporters: [otlp/jaegr, spanmetrics]"
        )

    def b_collector_endpoint(r):
        cm = configmap(r, "otel-collector-config")
        cm["data"]["otel-collector.yaml"] = cm["data"]["otel-collector.yaml"].replace(
            "jaeger:4317", "jaeger:14250"
        )

    def b_dashboard(r):
        cm = configmap(r, "grafana-dashboards")
        key = next(iter(cm["data"]))
        d = json.loads(cm["data"][key])
        for p in d["panels"]:
            if p.get("targets"):
                p["targets"][0]["expr"] = "sum(rate(switchyard_worker_deliveries_total[1m])"
                break
        cm["data"][key] = json.dumps(d)

    def b_prometheus(r):
        cm = configmap(r, "prometheus-config")
        cm["data"]["prometheus.yml"] = cm["data"]["prometheus.yml"].replace(
            "scrape_interval: 15s", "scrape_interval: 15 s", 1
        )

    def b_prometheus_sd(r):
        cm = configmap(r, "prometheus-config")
        cm["data"]["prometheus.yml"] = cm["data"]["prometheus.yml"].replace(
            "_admin._tcp.workers.", "_metrics._tcp.workers."
        )

    def b_secret(r):
        vols = r.get("Deployment", "gateway")["spec"]["template"]["spec"]["volumes"]
        next(v for v in vols if "secret" in v)["secret"]["secretName"] = "switchyard-undocumented"

    def b_worker_key(r):
        cm = configmap(r, "switchyard-worker-config")
        cm["data"]["worker.toml"] = cm["data"]["worker.toml"].replace(
            "drain_window =", "drain_windw ="
        )

    def b_advertise(r):
        for e in r.get("StatefulSet", "worker")["spec"]["template"]["spec"]["containers"][0]["env"]:
            if e["name"] == "SWITCHYARD__WORKER__ADVERTISE":
                e["value"] = "$(POD_NAME).worker.$(POD_NAMESPACE).svc:9101"

    def b_security(r):
        c = r.get("Deployment", "grafana")["spec"]["template"]["spec"]["containers"][0]
        c["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}

    def b_nats_conf(r):
        cm = configmap(r, "nats-config")
        cm["data"]["server.conf"] = cm["data"]["server.conf"].replace(
            "max_payload:", "max_payloads:"
        )

    return [
        ("a volume mount naming no volume", b_mount, False),
        ("a Service targeting an undeclared port", b_service, False),
        ("nats.url naming a pod the StatefulSet does not have", b_nats_url, False),
        ("a Collector pipeline naming an undefined exporter", b_collector, False),
        ("a Collector exporter dialing a port no Service has", b_collector_endpoint, False),
        ("a dashboard query that does not parse", b_dashboard, "promtool"),
        ("a Prometheus config promtool refuses", b_prometheus, "promtool"),
        ("a Prometheus SRV name of a port the Service does not name", b_prometheus_sd, False),
        ("a Secret not documented in secrets.example.yaml", b_secret, False),
        ("an unknown key in worker.toml", b_worker_key, "switchyard"),
        ("worker.advertise naming another Service", b_advertise, False),
        ("an unknown key in nats server.conf", b_nats_conf, "nats_server"),
        ("a container that keeps its capabilities", b_security, False),
    ]


def self_test(renders, args, example, fake):
    base = next(r for r in renders if r.name == "dev")
    failed = 0
    caught = 0
    # The unbroken copy must pass, or every break below would be "caught" for nothing.
    clean = check_render(
        Render(base.name, copy.deepcopy(base.docs)), args, example, fake, report=False
    )
    if clean:
        print(
            f"check-deploy: self-test: the unbroken render fails already: {clean[0]}",
            file=sys.stderr,
        )
        return 1, 0
    for what, brk, needs in breaks():
        if needs and not getattr(args, needs):
            print(f"check-deploy: self-test: skipped ({needs.replace('_', '-')} not found): {what}")
            continue
        r = Render(f"{base.name}+broken", copy.deepcopy(base.docs))
        brk(r)
        problems = check_render(r, args, example, fake, report=False)
        if problems:
            caught += 1
            print(f"check-deploy: self-test: caught {what}: {problems[0].splitlines()[0]}")
        else:
            failed += 1
            print(f"check-deploy: self-test: NOT CAUGHT: {what}", file=sys.stderr)
    return failed, caught


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rendered", action="append", required=True, metavar="NAME=FILE")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--promtool")
    parser.add_argument("--switchyard")
    parser.add_argument("--nats-server")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.nats_version = (0, 0)
    if args.nats_server:
        v = re.search(r"v(\d+)\.(\d+)", run([args.nats_server, "--version"]).stdout)
        args.nats_version = (int(v.group(1)), int(v.group(2))) if v else (0, 0)
    renders = [load_render(*spec.split("=", 1)) for spec in args.rendered]
    example = load_example()
    fake = FakeSecrets(args.work)
    if args.self_test:
        failed, caught = self_test(renders, args, example, fake)
        if failed:
            print(
                f"check-deploy: self-test: {failed} broken render(s) passed the checks",
                file=sys.stderr,
            )
            return 1
        print(f"check-deploy: self-test: all {caught} breaks caught")
        return 0
    problems = []
    for r in renders:
        problems += check_render(r, args, example, fake)
    if args.nats_server and args.nats_version < (2, 10):
        print(
            f"check-deploy: note: nats-server {args.nats_version[0]}.{args.nats_version[1]} predates "
            "jetstream.sync_interval (2.10): it checked the NATS configs without that line"
        )
    for p in problems:
        print(f"check-deploy: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
