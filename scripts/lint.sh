#!/usr/bin/env bash
# Every linter over what exists. Each layer's checks run once that layer has files.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
step() { echo "lint: $*"; }

step ruff; $bin/ruff check .; $bin/ruff format --check .  # `a && b` would not stop set -e
step yamllint; $bin/yamllint -s .
step "lab config example"; $bin/python -m renderlab.lab.check_config Pulumi.example.yaml >/dev/null

mapfile -t dockerfiles < <(find images -name Dockerfile 2>/dev/null | sort)
if ((${#dockerfiles[@]})); then
  step "hadolint ${dockerfiles[*]}"; $bin/hadolint --failure-threshold warning "${dockerfiles[@]}"
fi
if [[ -f ansible/site.yml ]]; then
  step "ansible-lint (production profile)"
  (cd ansible && ANSIBLE_CONFIG=ansible.cfg ../$bin/ansible-lint --profile production --strict -q)
fi
mapfile -t manifests < <(find k8s -name '*.yaml' ! -name 'kustomization.yaml' 2>/dev/null | sort)
if ((${#manifests[@]})); then
  step "kubernetes-validate --strict (${#manifests[@]} files)"
  $bin/kubernetes-validate --strict --quiet "${manifests[@]}"
fi
step "mkdocs build --strict"; NO_MKDOCS_2_WARNING=1 $bin/mkdocs build --strict -q
step ok
