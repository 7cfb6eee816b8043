"""Helm actions for the Kubernetes tests, through the real Helm library (helm-python-sdk).

    python helm.py install|upgrade KUBECONFIG NAMESPACE RELEASE CHART VALUES_JSON
    python helm.py uninstall KUBECONFIG NAMESPACE RELEASE
    python helm.py template NAMESPACE RELEASE CHART VALUES_JSON

Prints the release's rendered manifest (install, upgrade, template) on standard output; a failure
exits 1 with Helm's message on standard error.
"""

import json
import sys

import helm_python as helm


def main(argv: list[str]) -> int:
    action = argv[1]
    try:
        if action == "template":
            namespace, release, chart_dir, values = argv[2], argv[3], argv[4], json.loads(argv[5])
            with helm.Chart.load(chart_dir) as chart:
                chart.validate_schema(values)
                files = chart.render(values, name=release, namespace=namespace, is_install=True)
            for path in sorted(files):
                if not path.endswith("NOTES.txt") and files[path].strip():
                    print(f"---\n# Source: {path}\n{files[path]}")
            return 0
        kubeconfig, namespace, release = argv[2], argv[3], argv[4]
        with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as config:
            if action == "uninstall":
                config.uninstall(release, timeout=60)
                return 0
            chart_dir, values = argv[5], json.loads(argv[6])
            if action == "install":
                rel = config.install(chart_dir, release, values, namespace=namespace, create_namespace=True,
                                     timeout=120)
            elif action == "upgrade":
                rel = config.upgrade(chart_dir, release, values, namespace=namespace, timeout=120)
            else:
                print(f"unknown action {action!r}", file=sys.stderr)
                return 2
            print(rel.get("manifest", "") if isinstance(rel, dict) else rel)
            return 0
    except helm.HelmError as e:
        print(f"helm {action}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
