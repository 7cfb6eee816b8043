"""Checks the Helm chart offline; run through charts/check.sh, which provides the tools.

Lints the chart, renders it with every values file of charts/tests/values/, validates each
rendered object against the Kubernetes schemas, asserts the RBAC and security properties the
chart promises, proves values.schema.json and the templates refuse the bad values of
charts/tests/bad-values/, checks the example resources against the CRDs' schemas, and lints
the YAML and the Dockerfile. Any failure exits non-zero; nothing is skipped silently.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "charts"
CHART = CHARTS / "vrouter-operator"
CRDS = CHART / "crds" / "crds.yaml"
TESTS = CHARTS / "tests"
EXAMPLES = ROOT / "examples" / "quickstart"
KUBE_VERSION = "1.33.0"
RELEASE = "vr"
LEADER_LABEL = "vrouter.kojuro.date/leader"
NAMESPACE = "vrouter-system"
GROUP = "vrouter.kojuro.date"
# Kinds that are CRDs of other projects: no offline schema, so they are listed and skipped
# out loud, never silently.
FOREIGN_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


class CheckError(Exception):
    """A failed check, with what and where."""


failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"  FAIL {msg}")


def expect(cond: bool, msg: str) -> None:
    if not cond:
        fail(msg)


def phase(name: str):
    print(f"== {name}")
    return time.monotonic()


def done(start: float) -> None:
    print(f"   ({time.monotonic() - start:.1f}s)")


def load_values(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CheckError(f"{path}: values must be a mapping")
    return data


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    if not first.startswith("# expect: "):
        raise CheckError(f"{path}: first line must be '# expect: <part of the error message>'")
    return first[len("# expect: "):].strip()


# ---------------------------------------------------------------- rendering


def render(values: dict) -> list[dict]:
    """Renders the chart (schema validation included) into a list of objects."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path in sorted(files):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(files[path]):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise CheckError(f"{path}: rendered a document that is not an object: {doc!r:.80}")
            doc.setdefault("metadata", {})
            doc["_source"] = path
            objects.append(doc)
    return objects


def name_of(o: dict) -> str:
    ns = o["metadata"].get("namespace")
    return f"{o['kind']}/{ns + '/' if ns else ''}{o['metadata'].get('name')}"


def strip(o: dict) -> dict:
    return {k: v for k, v in o.items() if k != "_source"}


# ---------------------------------------------------------------- validation


def kube_validate(objects: list[dict], label: str) -> int:
    """Validates objects against the Kubernetes schemas (strict: unknown fields fail)."""
    skipped = []
    for o in objects:
        key = (o.get("apiVersion"), o.get("kind"))
        if key in FOREIGN_KINDS:
            skipped.append(name_of(o))
            continue
        try:
            kubernetes_validate.validate(strip(o), KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:
            fail(f"{label}: {name_of(o)} ({o['_source']}): {e.message}")
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path)
            fail(f"{label}: {name_of(o)} ({o['_source']}) at {where or '/'}: {e.message}")
    for s in skipped:
        print(f"   skipped {s}: a CRD of another project, no offline schema (checked for consistency below)")
    return len(objects) - len(skipped)


def pod_labels(dep: dict) -> dict:
    return dep["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def consistency(objects: list[dict], label: str) -> None:
    """Cross-object references: selectors, ports, names, subjects."""
    by_kind: dict[str, list[dict]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    deps = by_kind.get("Deployment", [])
    expect(len(deps) == 1, f"{label}: expected one Deployment, got {len(deps)}")
    if not deps:
        return
    dep = deps[0]
    labels = pod_labels(dep)
    expect(selects(dep["spec"]["selector"]["matchLabels"], labels), f"{label}: Deployment selector misses its pods")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    port_names = {p["name"] for p in container.get("ports", [])}
    services = {o["metadata"]["name"]: o for o in by_kind.get("Service", [])}
    leader_election = any(x.startswith("--lease-name") for x in container.get("args", []))
    for svc in services.values():
        selector = dict(svc["spec"].get("selector", {}))
        if leader_election and svc["metadata"]["name"].endswith("-agent"):
            # The agent Service selects the leader: the label the leading replica sets on its
            # own pod at run time (operator/src/leader/label.rs), not in the pod template.
            expect(selector.pop(LEADER_LABEL, None) == "true", f"{label}: agent Service does not select the leader")
        expect(selects(selector, labels), f"{label}: {name_of(svc)} selects no operator pod")
        for p in svc["spec"]["ports"]:
            expect(p["targetPort"] in port_names, f"{label}: {name_of(svc)} targets missing port {p['targetPort']}")
    for probe in ("livenessProbe", "readinessProbe"):
        expect(container[probe]["httpGet"]["port"] in port_names, f"{label}: {probe} on a missing port")
    sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
    accounts = {o["metadata"]["name"] for o in by_kind.get("ServiceAccount", [])}
    expect(sa in accounts, f"{label}: ServiceAccount {sa} is not rendered")
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects if o["kind"] in ("Role", "ClusterRole")}
    for b in by_kind.get("RoleBinding", []) + by_kind.get("ClusterRoleBinding", []):
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        expect((ref["kind"], ns, ref["name"]) in roles, f"{label}: {name_of(b)} refers to missing {ref['kind']} {ref['name']}")
        for s in b["subjects"]:
            expect(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == NAMESPACE,
                   f"{label}: {name_of(b)} binds {s} instead of the operator's ServiceAccount")
    for vwc in by_kind.get("ValidatingWebhookConfiguration", []):
        for w in vwc["webhooks"]:
            svc = w["clientConfig"]["service"]
            target = services.get(svc["name"])
            expect(target is not None and svc["namespace"] == NAMESPACE,
                   f"{label}: webhook {w['name']} calls missing Service {svc['name']}")
            if target:
                expect(any(p["port"] == svc["port"] for p in target["spec"]["ports"]),
                       f"{label}: webhook {w['name']} calls port {svc['port']} that {svc['name']} lacks")
            for r in w["rules"]:
                expect(not any("/" in res for res in r["resources"]), f"{label}: webhook matches a subresource")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        expect(selects(pdb["spec"]["selector"]["matchLabels"], labels), f"{label}: PodDisruptionBudget selects no pod")
    for np in by_kind.get("NetworkPolicy", []):
        expect(selects(np["spec"]["podSelector"]["matchLabels"], labels), f"{label}: NetworkPolicy selects no pod")
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                expect(p["port"] in port_names, f"{label}: NetworkPolicy opens missing port {p['port']}")
    for sm in by_kind.get("ServiceMonitor", []):
        chosen = [s for s in services.values() if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        expect(len(chosen) == 1, f"{label}: ServiceMonitor selects {len(chosen)} Services, want the metrics Service")
        for ep in sm["spec"]["endpoints"]:
            expect(all(any(p["name"] == ep["port"] for p in s["spec"]["ports"]) for s in chosen),
                   f"{label}: ServiceMonitor scrapes missing port {ep['port']}")


def rules_of(objects: list[dict]) -> list[tuple[dict, dict]]:
    return [(o, r) for o in objects if o["kind"] in ("Role", "ClusterRole") for r in o.get("rules", [])]


def rbac(objects: list[dict], values: dict, label: str) -> None:
    kubevirt = values.get("providers", {}).get("kubevirt", {}).get("enabled", False)
    namespaces = values.get("rbac", {}).get("namespaces", [])
    exec_roles = []
    for o, r in rules_of(objects):
        where = f"{label}: {name_of(o)}"
        for field in ("apiGroups", "resources", "verbs"):
            expect("*" not in r.get(field, []), f"{where} grants '*' in {field}")
        if "" in r["apiGroups"] and "secrets" in r["resources"]:
            bad = set(r["verbs"]) & {"list", "watch", "deletecollection", "delete"}
            expect(not bad, f"{where} grants {sorted(bad)} on Secrets")
            if o["kind"] == "ClusterRole" and namespaces:
                fail(f"{where} grants Secrets cluster-wide although rbac.namespaces is set")
            # create alone (enrollment Secrets in router namespaces) reads and changes nothing.
            if set(r["verbs"]) - {"get"} and r["verbs"] != ["create"]:
                expect(o["kind"] == "Role" and o["metadata"]["namespace"] == NAMESPACE,
                       f"{where} may write Secrets outside the release namespace")
                if "resourceNames" not in r:
                    expect(r["verbs"] == ["create"], f"{where} may change any Secret: {r['verbs']}")
        if "pods/exec" in r["resources"]:
            exec_roles.append(o)
    if kubevirt:
        expect(bool(exec_roles), f"{label}: KubeVirt enabled but no pods/exec rule")
        if namespaces:
            got = sorted(o["metadata"].get("namespace") or "<cluster>" for o in exec_roles)
            expect(got == sorted(set(namespaces)), f"{label}: pods/exec granted in {got}, want {sorted(set(namespaces))}")
    else:
        expect(not exec_roles, f"{label}: pods/exec granted although providers.kubevirt.enabled is false")


def security(objects: list[dict], values: dict, label: str) -> None:
    dep = next(o for o in objects if o["kind"] == "Deployment")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    sc = c["securityContext"]
    psc = spec["securityContext"]
    expect(psc.get("runAsNonRoot") is True, f"{label}: pod runAsNonRoot is not true")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{label}: pod seccomp is not RuntimeDefault")
    expect(sc.get("readOnlyRootFilesystem") is True, f"{label}: root filesystem is writable")
    expect(sc.get("allowPrivilegeEscalation") is False, f"{label}: privilege escalation allowed")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{label}: capabilities not dropped")
    expect(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: liveness is not /healthz")
    expect(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: readiness is not /readyz")
    expect("requests" in c.get("resources", {}), f"{label}: no resource requests")
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    expect({"/tmp", "/var/lib/vrouter"} <= mounts, f"{label}: /tmp or the state dir is not a volume")
    expect(dep["spec"]["replicas"] == values.get("replicaCount", 2), f"{label}: wrong replica count")


def args_of(objects: list[dict]) -> list[str]:
    dep = next(o for o in objects if o["kind"] == "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0]["args"]


def kinds(objects: list[dict]) -> list[str]:
    return [o["kind"] for o in objects]


def find(objects: list[dict], kind: str, suffix: str = "") -> dict | None:
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)), None)


# What each values file must produce, beyond the checks every render gets.
def case_defaults(objects: list[dict]) -> None:
    a = args_of(objects)
    expect("--lease-name=vr-vrouter-operator-leader" in a, "defaults: no lease flag")
    expect("--server-dns-name=vr-vrouter-operator-agent.vrouter-system.svc" in a, "defaults: no in-cluster SAN")
    expect(not any(x.startswith("--agent-binary") for x in a), "defaults: --agent-binary without a QGA provider")
    expect("ValidatingWebhookConfiguration" in kinds(objects), "defaults: no webhook configuration")
    vwc = find(objects, "ValidatingWebhookConfiguration")
    expect(vwc is not None and "caBundle" not in vwc["webhooks"][0]["clientConfig"],
           "defaults: offline render must not invent a caBundle")
    expect("PodDisruptionBudget" in kinds(objects), "defaults: no PodDisruptionBudget for two replicas")
    for k in ("ServiceMonitor", "NetworkPolicy", "Role"):
        if k == "Role":
            expect([o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"] == [NAMESPACE],
                   "defaults: Roles outside the release namespace")
        else:
            expect(k not in kinds(objects), f"defaults: unexpected {k}")
    svc = find(objects, "Service", "-agent")
    expect(svc is not None and svc["spec"]["type"] == "ClusterIP", "defaults: agent Service is not ClusterIP")


def case_kubevirt(objects: list[dict]) -> None:
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] != NAMESPACE]
    expect(sorted(o["metadata"]["namespace"] for o in roles) == ["routers-dc1", "routers-dc2"],
           "kubevirt: no Role per router namespace")
    binds = [o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] != NAMESPACE]
    expect(len(binds) == 2, "kubevirt: no RoleBinding per router namespace")
    expect(not [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-routers")],
           "kubevirt: a cluster-wide router ClusterRole despite rbac.namespaces")
    for r in roles:
        res = {x for rule in r["rules"] for x in rule["resources"]}
        expect({"pods/exec", "pods", "virtualmachineinstances", "secrets"} <= res, f"kubevirt: {name_of(r)} lacks rules")
        pods = [rule for rule in r["rules"] if rule["resources"] == ["pods"]]
        expect(pods and pods[0]["verbs"] == ["list"], f"kubevirt: {name_of(r)} grants more than list on pods")
    vwc = find(objects, "ValidatingWebhookConfiguration")
    expect(vwc is not None and vwc["webhooks"][0]["failurePolicy"] == "Ignore", "kubevirt: failurePolicy not Ignore")
    expect("--agent-binary=/usr/share/vrouter/vrouter-agent" in args_of(objects), "kubevirt: no --agent-binary")


def case_nodeport(objects: list[dict]) -> None:
    svc = find(objects, "Service", "-agent")
    expect(svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0].get("nodePort") == 30443,
           "nodeport: node port not set")
    expect(svc["spec"].get("externalTrafficPolicy") == "Local", "nodeport: externalTrafficPolicy not set")
    expect("ServiceMonitor" in kinds(objects), "nodeport: no ServiceMonitor")
    sm = find(objects, "ServiceMonitor")
    expect(sm["metadata"]["labels"].get("release") == "prometheus", "nodeport: ServiceMonitor labels missing")
    np = find(objects, "NetworkPolicy")
    expect(np is not None and np["spec"]["policyTypes"] == ["Ingress", "Egress"], "nodeport: NetworkPolicy not egress-limited")
    expect(len(np["spec"]["egress"]) == 3, "nodeport: egress rules are DNS, API, the extra rule")
    expect("PodDisruptionBudget" in kinds(objects), "nodeport: no PodDisruptionBudget")
    aff = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["affinity"]
    expect("requiredDuringSchedulingIgnoredDuringExecution" in aff["podAntiAffinity"], "nodeport: anti-affinity not hard")
    expect("--server-dns-name=vrouter.example.net" in args_of(objects), "nodeport: external name not a SAN")


def case_loadbalancer(objects: list[dict]) -> None:
    a = args_of(objects)
    for want in ("--server-dns-name=vrouter.example.net", "--server-dns-name=agents.example.org",
                 "--server-ip=203.0.113.7", "--server-ip=2001:db8::7", "--server-ip=203.0.113.8",
                 "--leader-election=false", "--listen=[::]:7443", "--server-ip=198.51.100.9",
                 "--agent-binary=/usr/share/vrouter/vrouter-agent"):
        expect(want in a, f"loadbalancer: {want} missing from the arguments")
    expect(not any(x.startswith("--webhook") for x in a), "loadbalancer: webhook flags without the webhook")
    expect("ValidatingWebhookConfiguration" not in kinds(objects), "loadbalancer: webhook registered while disabled")
    svc = find(objects, "Service", "-agent")
    expect(svc["spec"]["type"] == "LoadBalancer" and svc["spec"].get("loadBalancerIP") == "203.0.113.8",
           "loadbalancer: Service not a LoadBalancer on its address")
    expect(svc["metadata"]["annotations"].get("metallb.universe.tf/address-pool") == "public", "loadbalancer: annotations lost")
    img = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    expect(img.endswith("@sha256:" + "0123456789abcdef" * 4), f"loadbalancer: digest not used: {img}")
    runtime = find(objects, "Role", "-runtime")
    expect(not any("leases" in r["resources"] for r in runtime["rules"]), "loadbalancer: Lease rights without election")
    expect("PodDisruptionBudget" not in kinds(objects), "loadbalancer: PDB for a single replica")


CASES = {
    "defaults.yaml": case_defaults,
    "kubevirt-namespaced.yaml": case_kubevirt,
    "nodeport-monitoring.yaml": case_nodeport,
    "loadbalancer-external.yaml": case_loadbalancer,
}


# ---------------------------------------------------------------- CRDs and examples


def crd_schemas() -> dict[str, dict]:
    """The CRDs' openAPIV3Schema as JSON Schemas, by kind, closed like Kubernetes' strict
    field validation: unknown fields fail unless the schema preserves them."""
    schemas = {}
    for crd in yaml.safe_load_all(CRDS.read_text()):
        if not crd:
            continue
        kind = crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            s = to_json_schema(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
            s["$schema"] = "http://json-schema.org/draft-07/schema#"
            s.setdefault("properties", {}).update({
                "apiVersion": {"const": f"{crd['spec']['group']}/{v['name']}"},
                "kind": {"const": kind},
                "metadata": {"type": "object", "required": ["name"],
                             "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}}},
            })
            s["required"] = sorted(set(s.get("required", [])) | {"apiVersion", "kind", "metadata"})
            schemas[f"{kind}.{v['name']}"] = s
    return schemas


def to_json_schema(node):
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: to_json_schema(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "type" in node:
            node["type"] = [node["type"], "null"]
        if "enum" in node:
            node["enum"] = node["enum"] + [None]
    if node.pop("x-kubernetes-int-or-string", False):
        node["type"] = ["integer", "string"]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    node.pop("x-kubernetes-validations", None)  # CEL rules: checked by the API server only
    types = node.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types)
    if is_object and "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


def check_crs(files: list[Path], schemas: dict[str, dict], tmp: Path, label: str) -> list[str]:
    """Checks every vrouter resource in `files` with check-jsonschema; returns its errors."""
    by_schema: dict[str, list[Path]] = {}
    errors = []
    n = 0
    for f in files:
        for i, doc in enumerate(yaml.safe_load_all(f.read_text())):
            if not doc:
                continue
            api = doc.get("apiVersion", "")
            if api.split("/")[0] != GROUP:
                try:
                    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
                except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
                    errors.append(f"{f.name}#{i}: {e.message}")
                continue
            key = f"{doc.get('kind')}.{api.split('/')[-1]}"
            if key not in schemas:
                errors.append(f"{f.name}#{i}: no CRD for {doc.get('kind')} {api}")
                continue
            n += 1
            out = tmp / f"{label.replace('/', '_')}-{f.stem}-{i}.json"
            out.write_text(json.dumps(doc))
            by_schema.setdefault(key, []).append(out)
    for key, instances in sorted(by_schema.items()):
        schema_file = tmp / f"{key}.schema.json"
        schema_file.write_text(json.dumps(schemas[key]))
        run = subprocess.run(["check-jsonschema", "--schemafile", str(schema_file), *map(str, instances)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            errors.append(f"{key}: {run.stdout.strip()} {run.stderr.strip()}")
    print(f"   {label}: {n} vrouter resources checked against {len(by_schema)} CRD schemas")
    return errors


def operator_flags(renders: dict[str, list[dict]]) -> None:
    """With VROUTER_OPERATOR=<binary>, every flag the chart passes to `run` must be one the
    binary accepts (its `run --help`)."""
    binary = os.environ.get("VROUTER_OPERATOR")
    if not binary:
        print("   not checked: set VROUTER_OPERATOR=<path to vrouter-operator> to check the chart's flags against it")
        return
    run = subprocess.run([binary, "run", "--help"], capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"{binary} run --help failed: {run.stderr.strip()}")
        return
    accepted = set(re.findall(r"(--[a-z][a-z0-9-]*)", run.stdout))
    used: dict[str, set[str]] = {}
    for label, objects in renders.items():
        for a in args_of(objects)[1:]:
            flag = a.split("=", 1)[0]
            used.setdefault(flag, set()).add(label)
    unknown = sorted(f for f in used if f not in accepted)
    for f in unknown:
        fail(f"{binary} run does not accept {f} (rendered with {', '.join(sorted(used[f]))})")
    if not unknown:
        print(f"   all {len(used)} flags the chart passes are accepted by {binary}")


def value_keys(values, schema, path=()) -> list[str]:
    """Keys of values.yaml as the README lists them: closed objects are descended into,
    free-form ones (security contexts, affinity) are one entry."""
    closed = isinstance(values, dict) and schema.get("additionalProperties") is False and "properties" in schema
    if closed and values:
        return [k for key, v in values.items() for k in value_keys(v, schema["properties"].get(key, {}), path + (key,))]
    return [".".join(path)]


def readme_lists_values() -> None:
    values = load_values(CHART / "values.yaml")
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    keys = value_keys(values, schema)
    missing = [k for k in keys if f"| `{k}` |" not in readme]
    expect(not missing, f"charts/vrouter-operator/README.md does not list {missing}")
    undocumented = [k for k in schema["properties"] if k != "global" and k not in values]
    expect(not undocumented, f"values.schema.json has keys values.yaml lacks: {undocumented}")
    print(f"   README lists all {len(keys)} values")


# ---------------------------------------------------------------- main


def main() -> int:
    total = time.monotonic()

    t = phase("yamllint (chart values, Chart.yaml, CRDs, test values)")
    lint_files = [CHART / "Chart.yaml", CHART / "values.yaml", CRDS, *sorted(TESTS.rglob("*.yaml"))]
    run = subprocess.run(["yamllint", "--strict", "-c", str(CHARTS / ".yamllint"), *map(str, lint_files)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"yamllint:\n{run.stdout}{run.stderr}")
    else:
        print(f"   {len(lint_files)} files clean")
    done(t)

    t = phase("README lists every value")
    readme_lists_values()
    done(t)

    t = phase(f"values files under charts/tests/values: lint, render, validate against Kubernetes {KUBE_VERSION}")
    value_files = sorted((TESTS / "values").glob("*.yaml"))
    renders: dict[str, list[dict]] = {}
    expect(sorted(f.name for f in value_files) == sorted(CASES), "charts/tests/values and CASES disagree")
    for f in value_files:
        values = load_values(f)
        label = f.stem
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
        for m in report.get("messages", []):
            if m["severity"] >= 2:
                fail(f"{label}: helm lint: {m['path']}: {m['error']}")
        try:
            objects = render(values)
        except helm.HelmError as e:
            fail(f"{label}: render failed: {e}")
            continue
        renders[label] = objects
        n = kube_validate(objects, label)
        consistency(objects, label)
        rbac(objects, values, label)
        security(objects, values, label)
        CASES.get(f.name, lambda _: None)(objects)
        print(f"   {label}: {len(objects)} objects, {n} validated ({', '.join(sorted(set(kinds(objects))))})")
    done(t)

    t = phase("the operator accepts the chart's flags")
    operator_flags(renders)
    done(t)

    t = phase("bad values are refused (values.schema.json or template checks)")
    for f in sorted((TESTS / "bad-values").glob("*.yaml")):
        want = expectation(f)
        try:
            render(load_values(f))
        except helm.HelmError as e:
            expect(want in str(e), f"{f.name}: refused, but the message lacks {want!r}: {e}")
            print(f"   {f.name}: refused ({want})")
            continue
        fail(f"{f.name}: accepted, must be refused ({want})")
    done(t)

    t = phase("CRDs and example resources")
    kube_validate([dict(c, _source="crds/crds.yaml") for c in yaml.safe_load_all(CRDS.read_text()) if c], "crds")
    schemas = crd_schemas()
    with tempfile.TemporaryDirectory() as tmp:
        for e in check_crs(sorted(EXAMPLES.glob("*.yaml")), schemas, Path(tmp), "examples/quickstart"):
            fail(e)
        for f in sorted((TESTS / "bad-crs").glob("*.yaml")):
            want = expectation(f)
            errors = check_crs([f], schemas, Path(tmp), f"bad-crs/{f.stem}")
            expect(any(want in e for e in errors), f"bad-crs/{f.name}: not refused with {want!r}: {errors}")
    done(t)

    t = phase("Dockerfile (hadolint)")
    dockerfile = ROOT / "Dockerfile"
    run = subprocess.run(["hadolint", "--config", str(CHARTS / "hadolint.yaml"), str(dockerfile)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"hadolint:\n{run.stdout}{run.stderr}")
    else:
        print("   Dockerfile clean")
    done(t)

    print(f"== {len(failures)} failure(s) in {time.monotonic() - total:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckError as e:
        print(f"check.py: {e}", file=sys.stderr)
        sys.exit(2)
