# renderlab: each stage runs alone; `make test` and `make demo` chain them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
CONFIG ?= Pulumi.example.yaml
APT_LISTS := $(sort $(wildcard requirements/apt*.txt))
LOCK := requirements/lock.txt
STAMP := $(VENV)/.lock-$(shell sha256sum $(LOCK) requirements/bootstrap.txt | sha256sum | cut -c1-16)
PYTEST_ARGS ?=

export PYTHONPATH := $(CURDIR)
export NO_MKDOCS_2_WARNING := 1

.PHONY: help setup apt venv lock check-config lint unit test demo fuzz clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: apt venv ## install system packages and the pinned Python stack

apt: ## install the Debian packages the project needs (only missing ones)
	scripts/apt-install.sh $(APT_LISTS)

venv: $(STAMP) ## create .venv from the hash-pinned lock file

$(STAMP): $(LOCK) requirements/bootstrap.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (bpy is built for it); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/bootstrap.txt
	$(UV) pip install -q --python $(PY) --require-hashes -r $(LOCK)
	rm -f $(VENV)/.lock-*
	touch $@

lock: ## re-resolve requirements/lock.txt from pyproject.toml (hash-pinned)
	$(UV) pip compile pyproject.toml --all-extras --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -q -o $(LOCK)

check-config: venv ## validate a stack file: make check-config CONFIG=Pulumi.<stack>.yaml
	$(PY) -m renderlab.lab.check_config $(CONFIG)

lint: venv ## every linter (ruff, yamllint, hadolint, ansible-lint, kubernetes-validate)
	scripts/lint.sh

unit: venv ## the fast tests (no Blender renders, no Airflow runs, no local lab)
	$(VENV)/bin/pytest -m "not slow and not lab" $(PYTEST_ARGS)

test: setup lint ## set up, lint, and run the whole test suite
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup ## run the render pipeline on this machine (local backend, bundled demo song)
	$(PY) -m renderlab.workstation.demo

fuzz: venv ## the long fuzz run (tests/fuzz, random, FUZZ_EXAMPLES per property; default 5000)
	HYPOTHESIS_PROFILE=long $(VENV)/bin/pytest tests/fuzz -p no:cacheprovider $(PYTEST_ARGS)

# --- tools (the Pulumi engine, built from its Go modules) ---
PULUMI_BIN := $(shell scripts/build-tools.sh --print-bin)
.PHONY: tools k8s-provider engine-test

tools: ## build the Pulumi CLI + language host at the lock's version into ~/.cache/renderlab/tools (once)
	scripts/build-tools.sh

k8s-provider: ## build the Pulumi Kubernetes provider from its Go module beside the engine (once; cold ~20 min, so not part of make tools)
	scripts/build-k8s-provider.sh

engine-test: venv ## the engine lane: pulumi up/preview/refresh/destroy of the lab against fakepve (needs make tools)
	$(VENV)/bin/pytest tests/infra/test_engine.py $(PYTEST_ARGS)

clean: ## remove the venv and caches (never touches your stack files)
	rm -rf $(VENV) .pytest_cache .ruff_cache

# --- fetch ---
.PHONY: fetch-test fetch-bench
fetch-test: venv ## asset fetch tests: file:// for real, the P4-shaped fake, a real p4d when on PATH
	$(VENV)/bin/pytest tests/fetch $(PYTEST_ARGS)

fetch-bench: venv ## benchmark: unchanged re-fetch vs first fetch of a 500-file / 200 MB project
	$(PY) benchmarks/fetch_bench.py

# --- infra ---
STACK ?= lab
INVENTORY ?= ansible/inventory/generated-$(STACK).yml
.PHONY: cluster-manifests infra-test infra-bench lab-preview lab-up lab-destroy lab-inventory

cluster-manifests: venv ## render k8s/ from the example stack (the objects Pulumi's cluster layer applies)
	$(PY) -m infra.manifests Pulumi.example.yaml k8s/

infra-test: venv ## the infra tests: fakepve over HTTPS, Pulumi mocks, the dynamic provider over gRPC
	$(VENV)/bin/pytest tests/infra $(PYTEST_ARGS)

infra-bench: venv ## benchmark: creating the five VMs sequentially vs in parallel (fakepve with latency)
	$(PY) benchmarks/infra_lab_create.py

# The Pulumi CLI: the one on PATH, else the one `make tools` built (PULUMI_BIN). Plugins are never downloaded.
# The stack's passphrase: PULUMI_CONFIG_PASSPHRASE if set, else a file (PULUMI_CONFIG_PASSPHRASE_FILE, or
# ~/.renderlab/pulumi-passphrase created 0600 on the first run: renderlab/lab/passphrase.py). Never a prompt.
# `make lab` runs unattended: its stages pass YES=1, so `pulumi up` shows its preview and applies it without
# asking (review first with `make lab-preview`). A stage run alone asks, as `pulumi up` does.
PULUMI_UP_ARGS = $(if $(filter 1,$(YES)),--yes)
PULUMI_RUN = cli=$$(command -v pulumi || echo "$(PULUMI_BIN)/pulumi"); \
  [ -x "$$cli" ] || { echo "no Pulumi CLI on PATH and none built: run \`make tools\` (docs/building.md: Build the lab)" >&2; exit 1; }; \
  pass=$$($(PY) -m renderlab.lab.passphrase ensure) || exit 1; \
  [ -z "$$pass" ] || export PULUMI_CONFIG_PASSPHRASE_FILE="$$pass"; \
  PATH="$(CURDIR)/$(VENV)/bin:$$(dirname "$$cli"):$$PATH" PULUMI_SKIP_UPDATE_CHECK=true \
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true "$$cli"

lab-preview: venv ## pulumi preview of STACK (default lab)
	$(PY) -m renderlab.lab.check_config Pulumi.$(STACK).yaml
	$(PULUMI_RUN) preview --diff --stack $(STACK)

lab-up: venv ## pulumi up of STACK: template, five VMs, secrets; the cluster layer once kubeconfig is set
	$(PY) -m renderlab.lab.check_config Pulumi.$(STACK).yaml
	$(PULUMI_RUN) up $(PULUMI_UP_ARGS) --stack $(STACK)

lab-destroy: venv ## pulumi destroy of STACK (removes the VMs and the template it built)
	$(PULUMI_RUN) destroy --stack $(STACK)

lab-inventory: ## write STACK's Ansible inventory output to INVENTORY (default ansible/inventory/generated-<stack>.yml, git-ignored; JSON is YAML)
	mkdir -p $(dir $(INVENTORY))
	$(PULUMI_RUN) stack output inventory --json --stack $(STACK) > $(INVENTORY).tmp \
	  && mv $(INVENTORY).tmp $(INVENTORY) || { rm -f $(INVENTORY).tmp; exit 1; }

# --- make lab: every stage in order (renderlab/lab/stages.py), each one also a target of its own ---
.PHONY: lab lab-stages lab-prereqs lab-vms lab-secrets lab-ca-cert lab-known-hosts lab-hosts lab-cluster lab-images \
  lab-rollout lab-airflow-connection lab-depot
LAB_SECRETS ?= $(HOME)/.renderlab/$(STACK)-secrets.yml
LAB_KNOWN_HOSTS ?= $(HOME)/.renderlab/known_hosts
# LAB_EXTRA_INVENTORY: an inventory merged over the generated one (host and group vars only): the local lab's
# connection and node-in-a-container settings (tests/lab/test_make_lab.py). A real lab leaves it empty.
LAB_EXTRA_INVENTORY ?=
ANSIBLE_LAB = cd ansible && ANSIBLE_CONFIG=ansible.cfg ../$(VENV)/bin/ansible-playbook -i $(abspath $(INVENTORY)) \
  $(if $(LAB_EXTRA_INVENTORY),-i $(abspath $(LAB_EXTRA_INVENTORY))) -e @$(LAB_SECRETS) --ssh-common-args "-o UserKnownHostsFile=$(LAB_KNOWN_HOSTS) -o StrictHostKeyChecking=yes"

lab: venv ## build the whole lab for STACK, stage by stage; skips the stages done, resumes where one failed (FROM=, TO= a stage)
	$(PY) -m renderlab.lab.stages run --stack $(STACK) $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO))

lab-stages: venv ## list make lab's stages in order
	@$(PY) -m renderlab.lab.stages list

lab-prereqs: venv ## one line each: Proxmox version and token privileges, Python, Pulumi/Go, SSH key, passphrase
	$(PY) -m renderlab.workstation.prereqs Pulumi.$(STACK).yaml --stack $(STACK)

lab-vms: lab-up ## = lab-up

lab-secrets: venv ## the generated service secrets from Pulumi into LAB_SECRETS (0600)
	PATH="$$PATH:$(PULUMI_BIN)" $(PY) -m renderlab.lab.host_secrets from-pulumi --stack $(STACK) -o $(LAB_SECRETS)

LAB_CA_CERT ?= $(HOME)/.renderlab/$(STACK)-ca.crt
lab-ca-cert: venv ## the lab CA's certificate (public) from LAB_SECRETS into LAB_CA_CERT: AIRFLOW_CA_FILE for make render
	$(PY) -m renderlab.lab.lab_ca ca-cert -f $(LAB_SECRETS) -o $(LAB_CA_CERT)

lab-known-hosts: venv ## record the VMs' SSH host keys in LAB_KNOWN_HOSTS on first contact
	$(PY) -m renderlab.lab.known_hosts record Pulumi.$(STACK).yaml --file $(LAB_KNOWN_HOSTS)

lab-hosts: venv ## site.yml on every VM of STACK (host keys checked against LAB_KNOWN_HOSTS)
	$(ANSIBLE_LAB) site.yml

LAB_KUBECONFIG ?= kubeconfig
lab-cluster: venv ## the kubeconfig the hosts stage fetched as STACK's secret renderlab:kubeconfig (when it changed), then pulumi up: the cluster layer
	$(PY) -m renderlab.lab.kubeconfig_secret --stack $(STACK) --kubeconfig $(LAB_KUBECONFIG) \
	  --pulumi "$$(command -v pulumi || echo $(PULUMI_BIN)/pulumi)"
	$(PULUMI_RUN) up $(PULUMI_UP_ARGS) --stack $(STACK)

# Always pushed: an image built but not pushed (the registry did not answer) would leave the rollout waiting on
# a pull that never succeeds; here the stage fails with the push's own error instead.
lab-images: ## make images for STACK's stack file: built, pushed to the lab registry (or the stage fails), recorded
	$(MAKE) --no-print-directory images CONFIG=Pulumi.$(STACK).yaml IMAGES_PUSH=always

lab-rollout: venv ## the images lab-images recorded, rolled out: pulumi up (the docs Deployment), then the inventory again (the DAG's images)
	$(PULUMI_RUN) up $(PULUMI_UP_ARGS) --stack $(STACK)
	$(MAKE) --no-print-directory lab-inventory

lab-airflow-connection: venv ## Airflow's settings (the recorded images) and its Kubernetes connection (after the cluster stage)
	$(ANSIBLE_LAB) site.yml --tags airflow,k8s_connection

lab-depot: venv ## the depot seeded with the bundled songs (perforce role: artist, workspace, one submit)
	$(ANSIBLE_LAB) site.yml --tags perforce

# --- pipeline ---
.PHONY: images images-test pipeline-test pipeline-bench

# IMAGES_PUSH: auto pushes when the lab registry answers; always fails when it does not (make lab-images).
IMAGES_PUSH ?= auto
images: venv ## build the fetch, Blender and docs images (the docs site built first, strict; podman or docker), push over TLS with LAB_SECRETS' login if the lab registry answers, record the refs
	nice -n 19 $(PY) -m renderlab.workstation.images build --config $(CONFIG) --push $(IMAGES_PUSH) \
	  $(if $(wildcard $(LAB_SECRETS)),--secrets $(LAB_SECRETS))

images-test: venv ## container tests: make images (cached), entrypoints and the DAG's Job pods run by podman (tests/containers)
	$(VENV)/bin/pytest tests/containers $(PYTEST_ARGS)

pipeline-test: venv ## the pipeline's tests (DAG, backends, local end to end)
	$(VENV)/bin/pytest tests/pipeline $(PYTEST_ARGS)

pipeline-bench: venv ## local DAG end to end vs bare Blender on the same frames (prints the ratio)
	$(PY) benchmarks/pipeline_bench.py

# --- trigger: Airflow on this machine, the UI and the command line ---
.PHONY: airflow airflow-stop render trigger-test
SONG ?= $(shell sed -n 's/^DEFAULT_SONG = "\(.*\)"$$/\1/p' renderlab/pipeline/depot_songs.py)
FRAMES ?= all
PRESET ?=

airflow: venv ## Airflow 3 here as the lab's VM runs it (4 components, local backend, demo depot); prints URL + login
	$(PY) -m renderlab.workstation.local_airflow start --config $(CONFIG)

airflow-stop: venv ## stop every process `make airflow` started (by its PID file), from another terminal
	$(PY) -m renderlab.workstation.local_airflow stop

render: venv ## trigger the render DAG on a running Airflow and follow it: make render SONG=... FRAMES=1-96 PRESET=demo
	$(PY) -m renderlab.workstation.trigger --song $(SONG) --frames $(FRAMES) $(if $(PRESET),--preset $(PRESET)) $(RENDER_ARGS)

trigger-test: venv ## the browser test (Playwright + Debian's chromium) and the CLI test, against their own Airflow
	$(VENV)/bin/pytest tests/trigger $(PYTEST_ARGS)

# --- content (blender_scripts) ---
.PHONY: blender-pyc blender-songs blender-test blender-bench real-midi
BPY_SCRIPTS := $(VENV)/lib/python3.11/site-packages/bpy/5.0/scripts

blender-pyc: venv ## precompile bpy's own scripts (Blender never writes their .pyc; ~0.5 s saved per start)
	$(PY) -m compileall -q -j 0 $(BPY_SCRIPTS) >/dev/null

blender-songs: venv ## re-compose the demo songs into depot/songs/<project>/song.mid
	$(PY) -m blender_scripts.demo_songs --depot depot

blender-test: blender-pyc ## content tests with real bpy (build, measure the saved .blend, tiny renders)
	$(VENV)/bin/pytest tests/blender $(PYTEST_ARGS)

blender-bench: blender-pyc ## content measures: timing error, separation, build time, memory, s/frame
	$(PY) benchmarks/blender_bench.py $(BENCH_ARGS)

real-midi: venv ## fetch the real MIDI files of the visibility checks (pop, piano, strings) into ~/.cache/renderlab/real-midi, hash-checked
	$(PY) -m renderlab.workstation.real_midi

# --- hosts ---
# The local lab's own files (not LAB_SECRETS: that is the Proxmox stack's, set above, and `?=` kept it here).
LOCAL_LAB_INVENTORY ?= .cache/lab/$${RENDERLAB_LAB_PREFIX:-rl0}/inventory.yml
LOCAL_LAB_SECRETS ?= .cache/lab/$${RENDERLAB_LAB_PREFIX:-rl0}/secrets.yml
.PHONY: lab-local lab-local-down lab-site lab-verify lab-test lab-bench

lab-local: venv ## boot the local systemd-nspawn lab (env: RENDERLAB_LAB_BRIDGE, _SUBNET, _PREFIX)
	$(PY) -m renderlab.workstation.nspawn_lab up

lab-local-down: venv ## tear the local lab down: hosts, bridge, NAT rules, state
	$(PY) -m renderlab.workstation.nspawn_lab down

lab-site: venv ## run ansible/site.yml against the local lab
	cd ansible && ANSIBLE_CONFIG=ansible.cfg ../$(VENV)/bin/ansible-playbook -i ../$(LOCAL_LAB_INVENTORY) \
	  -e @../$(LOCAL_LAB_SECRETS) site.yml

lab-verify: venv ## run the testinfra suite against the local lab
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH ANSIBLE_CONFIG=ansible/ansible.cfg RENDERLAB_HOST_SECRETS=$(LOCAL_LAB_SECRETS) \
	  $(VENV)/bin/pytest tests/hosts --hosts=ansible://all --ansible-inventory=$(LOCAL_LAB_INVENTORY)

lab-test: venv ## boot a lab, run site.yml twice, verify with testinfra, tear down (tests/lab)
	$(VENV)/bin/pytest tests/lab -m lab $(PYTEST_ARGS)

lab-bench: venv ## time site.yml on a fresh local lab: first run, second run (changed=0)
	$(PY) benchmarks/lab_bench.py

# --- backups ---
BACKUP_REPO ?=
BACKUP_SECRETS ?= ansible/inventory/host-secrets-$(STACK).yml
.PHONY: lab-backup-workstation lab-restore-workstation lab-restore-drill

lab-backup-workstation: venv ## back up Pulumi.STACK.yaml, its Pulumi state and BACKUP_SECRETS with restic into BACKUP_REPO (encrypted)
	@[ -n "$(BACKUP_REPO)" ] || { echo "set BACKUP_REPO (a folder on another disk, sftp:user@host:/path or s3:https://...)" >&2; exit 2; }
	$(PY) -m renderlab.workstation.backup backup --repo $(BACKUP_REPO) --stack-file Pulumi.$(STACK).yaml \
	  $(if $(wildcard $(BACKUP_SECRETS)),--file $(BACKUP_SECRETS)) $(if $(NO_STATE),,--pulumi-stack $(STACK))

lab-restore-workstation: venv ## restore the workstation's backup from BACKUP_REPO in place (TARGET=/ by default)
	@[ -n "$(BACKUP_REPO)" ] || { echo "set BACKUP_REPO" >&2; exit 2; }
	$(PY) -m renderlab.workstation.backup restore --repo $(BACKUP_REPO) --target $(or $(TARGET),/)

lab-restore-drill: venv ## back up the local lab, destroy (Airflow DB, runs, a secrets file), restore, prove; boots a lab unless one is up
	$(VENV)/bin/pytest tests/lab/test_restore_drill.py -m lab -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: cluster-test lab-rehearsal lab-make-test
# Opt-in: on the lab `RENDERLAB_LAB_KEEP=1 RENDERLAB_LAB_SHARE_SIZE=8G make cluster-test` left up (same
# RENDERLAB_LAB_* env; the share-full fault needs the sized share), with the Jobs'
# images built in this checkout (`.venv/bin/python -m renderlab.workstation.images build --only blender --only fetch --push never`:
# imported on the nodes, no lab registry here). A missing prerequisite fails the target with the command that
# provides it (RENDERLAB_REQUIRE_LANES=1), never a green skip.
lab-rehearsal: venv ## one render through the local lab: the DAG on its Airflow host via the REST API, Jobs on both nodes, outputs checked like make demo; records for benchmarks/lab_scaling.py
	RENDERLAB_REHEARSAL_LANE=1 RENDERLAB_REQUIRE_LANES=1 $(VENV)/bin/pytest tests/rehearsal -m lab -p no:cacheprovider -s $(PYTEST_ARGS)

lab-make-test: venv ## `make lab` itself, all 11 stages, against a fake Proxmox whose VMs are local lab hosts: a host-stage failure, the resume, a second run (needs make tools, k8s-artifacts, k8s-provider)
	$(VENV)/bin/pytest tests/lab/test_make_lab.py -m lab -p no:cacheprovider $(PYTEST_ARGS)

cluster-test: venv ## the two-node kubeadm cluster in the local lab: site.yml twice, then nodes, pods, Services, DNS, RBAC, NetworkPolicy, docs, restart (needs make k8s-artifacts; `make test` runs it on the lab lane's lab)
	$(VENV)/bin/pytest tests/cluster -m lab $(PYTEST_ARGS)

# --- cluster (upstream Kubernetes with kubeadm: its binaries and images built here) ---
.PHONY: k8s-artifacts k8s-vulncheck

k8s-artifacts: venv ## Kubernetes, containerd, runc, CNI, CoreDNS, kube-router and kubeadm's images from their Go modules, into ~/.cache/renderlab/k8s/v<version> (once)
	$(PY) -m renderlab.workstation.k8s_artifacts --config $(CONFIG)

k8s-vulncheck: venv ## govulncheck (built from its Go module) over every binary k8s-artifacts built
	$(PY) -m renderlab.workstation.k8s_vulncheck --config $(CONFIG)

# --- hostsroles ---
.PHONY: airflow-host-lock airflow-bench

# The repo lock as constraints but for python-dateutil: the FAB auth manager needs <3 (requirements/airflow-host.in).
airflow-host-lock: venv ## re-resolve the Airflow VM's hash-pinned requirements (the repo lock as constraints)
	mkdir -p .cache && awk '/^python-dateutil==/{skip=1;next} skip && /^ /{next} {skip=0; print}' $(LOCK) \
	  > .cache/airflow-host-constraints.txt
	$(UV) pip compile requirements/airflow-host.in -c .cache/airflow-host-constraints.txt --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 -q -o ansible/roles/airflow/files/requirements.txt

airflow-bench: venv ## time the airflow role alone on a fresh local lab: first run, second run (changed=0)
	$(PY) benchmarks/airflow_role_bench.py

# --- docs ---
GALLERY ?= out/demo/gallery
.PHONY: docs docs-build docs-test

docs-build: venv ## build the docs site into build/site (mkdocs build --strict; mermaid pinned from npm)
	$(VENV)/bin/mkdocs build --strict -q

docs: docs-build ## build the site and serve it with the demo's gallery on 127.0.0.1 (prints the URL; DOCS_PORT=)
	$(PY) -m renderlab.workstation.docs_server --site build/site --gallery $(GALLERY)

docs-test: venv ## the docs tests: the gallery Job, the site in headless chromium (Playwright), served by nginx
	$(VENV)/bin/pytest tests/docs $(PYTEST_ARGS)

print-%: # print a make variable (tests read the defaults through it)
	@echo '$($*)'
