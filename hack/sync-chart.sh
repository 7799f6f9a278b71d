#!/usr/bin/env bash
# Copies what `make manifests` generates into the Helm chart, so the chart and config/
# never drift: the CRDs (charts/postwarden/crds) and the operator's RBAC rules
# (charts/postwarden/files/operator-rbac.yaml, read by the chart's RBAC templates).
# test/chart fails when the copies are stale.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
chart="$repo/charts/postwarden"

rm -f "$chart"/crds/*.yaml
cp "$repo"/config/crd/bases/*.yaml "$chart/crds/"
cp "$repo/config/rbac/role.yaml" "$chart/files/operator-rbac.yaml"
