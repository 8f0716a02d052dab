"""Container images: `make images` builds them, tags them by content, pushes them and records the references.

    python -m renderlab.workstation.images build [--push auto|always|never] [--base auto|official|debootstrap|REF]
                                     [--config Pulumi.<stack>.yaml] [--only blender|fetch|docs]
    python -m renderlab.workstation.images requirements    # regenerate requirements/image-*.txt from the lock

Each image's build context is staged from exactly the files its Dockerfile COPYs, so its inputs are the code
it runs and nothing else. The docs image copies the built site: `build/site` in its Dockerfile names the site
this tool builds first (the project's mkdocs build, into .cache/images/site), so its tag follows the site. The tag is the SHA-256 of that context, the Dockerfile and the build arguments
(the base image's id included); an image whose tag exists is not rebuilt. Each image is tagged locally with
the reference its Jobs pull (<pull registry>/renderlab-<name>:<tag>), pushed to the push registry when one
answers, and recorded per stack file (renderlab.lab.image_refs: tag, pushed digest, image id, base, size);
the inventory's pipeline settings carry those references to the DAG, which never computes a tag.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from renderlab.base import cli
from renderlab.base.errors import CommandError

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "lock.txt"
NAMES = ("blender", "fetch", "docs")
CONTAINERS_CONF = REPO / "images" / "containers.conf"
STAGE = REPO / ".cache" / "images" / "context"
# The Python packages each image's code imports; the lock supplies these and everything they need.
IMAGE_ROOTS = {
    # jinja2: the gallery pages (renderlab/jobs/gallery_pages.py)
    "blender": ["bpy", "mido", "pydantic", "pyyaml", "pyfluidsynth", "jinja2"],
    # pydantic: the share-state schema (renderlab/jobs/fetch/state.py)
    "fetch": ["p4python", "rich", "pydantic"],
}
ENGINES = ("podman", "docker")
# The locally made base (debootstrap rootfs imported); its tag follows the rootfs build.
LOCAL_BASE = "localhost/renderlab-base"


class ImageError(CommandError):
    exit_code = 2


# COPY sources that are made, not checked in: the path a Dockerfile names -> where this tool makes it.
SITE = REPO / ".cache" / "images" / "site"
GENERATED = {"build/site": SITE}
_made: set[str] = set()


def _site_date() -> str:
    """The site's build date (sitemap): the last commit touching the docs, so the same docs give the same site."""
    res = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%ct", "--", "docs", "mkdocs.yml"],
        capture_output=True,
        text=True,
        check=False,
    )
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else "0"


def build_site() -> Path:
    """The docs site, built once per run with the project's own `mkdocs build --strict` into SITE."""
    if "build/site" in _made and SITE.is_dir():
        return SITE
    log(f"docs: building the site into {SITE.relative_to(REPO)} (mkdocs build --strict)")
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "--clean", "--site-dir", str(SITE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": _site_date(), "NO_MKDOCS_2_WARNING": "1"},
    )
    if res.returncode != 0:
        tail = " / ".join(res.stderr.strip().splitlines()[-5:])
        raise ImageError(
            f"the docs site does not build (`mkdocs build --strict` exited {res.returncode}): {tail}"
        )
    log(f"docs: site built in {time.monotonic() - t0:.0f} s")
    _made.add("build/site")
    return SITE


def source(rel: str) -> Path:
    """Where a context file comes from: the checkout, or for a made path (build/site/...) where it was made."""
    for prefix, made in GENERATED.items():
        if rel == prefix or rel.startswith(prefix + "/"):
            return made / rel[len(prefix) :].lstrip("/")
    return REPO / rel


def log(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr, flush=True)


# --- requirement subsets ----------------------------------------------------------------------------------


def _lock_blocks(lock_text: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (its pin with hashes, the packages it is there for) from uv's annotated lock."""
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", lock_text):
        first = block.split("\n", 1)[0]
        if "==" not in first:
            continue
        name = first.split("==", 1)[0].strip().lower()
        pin = "\n".join(ln for ln in block.splitlines() if not ln.strip().startswith("#")).strip()
        via = set()
        for ln in block.splitlines():
            text = ln.strip().removeprefix("#").strip()
            if ln.strip().startswith("#") and text != "via":
                via.add(text.removeprefix("via ").split(" ", 1)[0].lower())
        out[name] = (pin, via)
    return out


def closure(lock_text: str, roots: list[str]) -> list[str]:
    """The roots and every package the lock says they pull in, transitively."""
    blocks = _lock_blocks(lock_text)
    missing = sorted({r.lower() for r in roots} - set(blocks))
    if missing:
        raise ImageError(f"not in {LOCK.name}: {missing}; add them to pyproject.toml and run `make lock`")
    wanted = {r.lower() for r in roots}
    grew = True
    while grew:
        grew = False
        for name, (_, via) in blocks.items():
            if name not in wanted and via & wanted:
                wanted.add(name)
                grew = True
    return sorted(wanted)


def pick_requirements(lock_text: str, roots: list[str]) -> str:
    """The lock's entries (with their hashes) for exactly these packages and their dependencies."""
    blocks = _lock_blocks(lock_text)
    body = "\n".join(blocks[n][0] for n in closure(lock_text, roots))
    return (
        f"# Generated by `python -m renderlab.workstation.images requirements` from {LOCK.name} (roots: "
        f"{', '.join(roots)}); do not edit.\n{body}\n"
    )


def requirements_path(name: str) -> Path:
    return REPO / "requirements" / f"image-{name}.txt"


# --- build context and tags -------------------------------------------------------------------------------


def dockerfile(name: str) -> Path:
    path = REPO / "images" / name / "Dockerfile"
    if not path.is_file():
        raise ImageError(f"{path.relative_to(REPO)} does not exist; the {name} image is not defined")
    return path


def copy_sources(name: str) -> list[str]:
    """The repository paths (globs) the Dockerfile's COPY lines name (multi-stage --from copies excluded)."""
    text = dockerfile(name).read_text(encoding="utf-8").replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def context_files(name: str) -> list[str]:
    files: set[str] = set()
    for pattern in copy_sources(name):
        if pattern in GENERATED:
            root = build_site()
            files.update(f"{pattern}/{p.relative_to(root)}" for p in root.rglob("*") if p.is_file())
            continue
        matches = sorted(glob.glob(pattern, root_dir=REPO))
        if not matches:
            raise ImageError(f"images/{name}/Dockerfile copies {pattern}, which does not exist")
        for rel in matches:
            path = REPO / rel
            if path.is_dir():
                files.update(
                    str(p.relative_to(REPO))
                    for p in path.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                )
            else:
                files.add(rel)
    return sorted(files)


def stage(name: str) -> Path:
    """A fresh build context holding exactly what the Dockerfile copies (and the Dockerfile)."""
    STAGE.mkdir(parents=True, exist_ok=True)
    ctx = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=STAGE))
    for rel in [*context_files(name), f"images/{name}/Dockerfile"]:
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source(rel), ctx / rel)
    return ctx


def content_tag(name: str, build_args: dict[str, str] | None = None) -> str:
    h = hashlib.sha256()
    for rel in [*context_files(name), f"images/{name}/Dockerfile"]:
        path = source(rel)
        h.update(f"{rel}\0{path.stat().st_mode & 0o111:o}\0".encode() + path.read_bytes() + b"\0")
    for k, v in sorted((build_args or {}).items()):
        h.update(f"{k}={v}\0".encode())
    return h.hexdigest()[:16]


def declared_args(name: str) -> set[str]:
    """The build arguments the Dockerfile declares (only those are passed: the docs image has no RENDER_UID)."""
    return set(
        re.findall(r"^ARG ([A-Za-z_][A-Za-z0-9_]*)", dockerfile(name).read_text(encoding="utf-8"), re.M)
    )


def official_base(name: str) -> str:
    """The Dockerfile's default BASE: Debian 12 slim pinned by digest."""
    m = re.search(r"^ARG BASE=(\S+)$", dockerfile(name).read_text(encoding="utf-8"), re.M)
    if not m:
        raise ImageError(f"images/{name}/Dockerfile has no `ARG BASE=<image>@sha256:...` line")
    return m.group(1)


# --- the engine -------------------------------------------------------------------------------------------


def engine_env() -> dict[str, str]:
    """The environment every engine call runs with: the project's containers.conf (never the global one)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "DOCKER_BUILDKIT": "1"}


def engine() -> str:
    """The first container tool whose engine answers (a docker CLI without a daemon does not count)."""
    unreachable = []
    for tool in ENGINES:
        if not shutil.which(tool):
            continue
        probe = subprocess.run(
            [tool, "info"], capture_output=True, check=False, timeout=60, env=engine_env(), text=True
        )
        if probe.returncode == 0:
            return tool
        unreachable.append(f"{tool} ({(probe.stderr.strip().splitlines() or ['no output'])[-1]})")
    found = f"; found {', '.join(unreachable)} but its engine does not answer" if unreachable else ""
    raise ImageError(
        f"no working container engine on this machine (looked for {', '.join(ENGINES)}{found}). "
        "Install podman and runc (`make apt` does: requirements/apt.txt) or run where Docker's daemon runs."
    )


def _run(tool: str, *args: str, capture: bool = True, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [tool, *args], capture_output=capture, text=True, check=False, env=engine_env(), timeout=3600
    )
    if check and res.returncode != 0:
        detail = (
            " / ".join((res.stderr or "").strip().splitlines()[-3:]) if capture else "see its output above"
        )
        raise ImageError(f"`{tool} {' '.join(args[:3])} ...` exited {res.returncode}: {detail}")
    return res


def exists(tool: str, ref: str) -> bool:
    if tool == "podman":
        return _run(tool, "image", "exists", ref, check=False).returncode == 0
    return _run(tool, "image", "inspect", ref, check=False).returncode == 0


def inspect(tool: str, ref: str, fmt: str) -> str:
    return _run(tool, "image", "inspect", "--format", fmt, ref).stdout.strip()


# --- the base ---------------------------------------------------------------------------------------------


def _lab_cache() -> Path:
    """The rootfs cache: per machine by default, so every clone here shares one base (and its layers)."""
    if os.environ.get("RENDERLAB_LAB_CACHE"):
        return Path(os.environ["RENDERLAB_LAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "renderlab" / "lab"


def debootstrap_base(tool: str) -> str:
    """Debian 12 from the local lab's cached debootstrap rootfs, imported once per rootfs build."""
    from renderlab.workstation.nspawn_lab import rootfs

    tree = rootfs.ensure(_lab_cache(), log)
    stamp = tree / rootfs.READY
    # Like a slim image: no downloaded packages, package lists, manuals or translations.
    drop = [
        "./var/cache/apt/archives/*.deb",
        "./var/lib/apt/lists/*_*",
        "./usr/share/doc/*",
        "./usr/share/man/*",
        "./usr/share/locale/*",
        f"./{rootfs.READY}",
    ]
    recipe = f"{stamp.read_text()}{stamp.stat().st_mtime_ns}{drop}"
    ref = f"{LOCAL_BASE}:{rootfs.SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"
    if exists(tool, ref):
        return ref
    log(f"importing the debootstrap rootfs {tree} as {ref}")
    tar = subprocess.Popen(
        ["tar", "-C", str(tree), "--numeric-owner", *(f"--exclude={d}" for d in drop), "-c", "."],
        stdout=subprocess.PIPE,
    )
    imp = subprocess.run(
        [tool, "import", "-", ref],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        env=engine_env(),
        check=False,
    )
    tar.stdout.close()  # type: ignore[union-attr]
    if tar.wait() != 0 or imp.returncode != 0:
        raise ImageError(f"importing {tree} as {ref} failed: {imp.stderr.strip()[-500:]}")
    return ref


def resolve_base(tool: str, choice: str, name: str) -> str:
    """auto: the Dockerfile's pinned Debian 12 slim when it is here or can be pulled, else the local base."""
    if choice == "debootstrap":
        return debootstrap_base(tool)
    official = official_base(name)
    ref = official if choice in ("auto", "official") else choice
    if exists(tool, ref):
        return ref
    pulled = _run(tool, "pull", "--quiet", ref, check=False)
    if pulled.returncode == 0:
        return ref
    why = (pulled.stderr.strip().splitlines() or ["no output"])[-1]
    if choice != "auto":
        raise ImageError(f"base image {ref} is not here and cannot be pulled: {why}")
    log(f"base {ref} cannot be pulled ({why[:160]}); building on a Debian 12 base made here with debootstrap")
    return debootstrap_base(tool)


# --- registry ---------------------------------------------------------------------------------------------


def registry_answers(hostport: str, ca_pem: str | None, timeout: float = 3.0) -> bool:
    """True when a Docker registry (API v2) answers there over TLS with a certificate the lab CA issued: 200, or
    401 when it wants a login. Without the lab CA nothing is trusted, so nothing answers."""
    import urllib.error
    import urllib.request

    if not ca_pem:
        return False
    ctx = ssl.create_default_context(cadata=ca_pem)
    try:
        with urllib.request.urlopen(f"https://{hostport}/v2/", timeout=timeout, context=ctx) as res:
            return res.status == 200
    except urllib.error.HTTPError as e:
        return e.code == 401
    except (OSError, ValueError):
        return False


class RegistryLogin:
    """What a push needs, from the host secrets file: the lab CA's certificate and the registry's login."""

    def __init__(self, secrets_file: str | Path | None):
        from renderlab.lab import host_secrets, lab_ca
        from renderlab.lab.cluster_names import REGISTRY_USER

        self.ca_pem: str | None = None
        self.user, self.password = REGISTRY_USER, ""
        if secrets_file:
            values = host_secrets.read(Path(secrets_file))
            self.ca_pem = lab_ca.ca_cert(values[host_secrets.LAB_CA])
            self.password = values["renderlab_registry_password"]

    def write(self, folder: Path, hostport: str) -> tuple[Path, Path]:
        """A cert dir holding ca.crt and an auth file (0600: it holds the password) for podman/docker."""
        import base64
        import json

        from renderlab.base import atomic

        certs = folder / "certs" / hostport
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "ca.crt").write_text(self.ca_pem or "")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        auth = atomic.write_text(
            folder / "config.json", json.dumps({"auths": {hostport: {"auth": token}}}), mode=0o600
        )
        return certs, Path(auth)


def push_command(
    tool: str, ref: str, pushed: str, *, digest_file: Path, certs: Path, auth: Path
) -> list[str]:
    """The push over TLS verified with the lab CA (never --tls-verify=false), logged in from a file: the
    password is never on the command line."""
    if tool == "podman":
        return [
            "push",
            "--cert-dir",
            str(certs),
            "--authfile",
            str(auth),
            "--digestfile",
            str(digest_file),
            ref,
            f"docker://{pushed}",
        ]
    # docker reads the login from DOCKER_CONFIG (auth's folder) and the CA from /etc/docker/certs.d/<host>.
    return ["--config", str(auth.parent), "push", pushed]


# --- build ------------------------------------------------------------------------------------------------


def build_args(cfg) -> dict[str, str]:
    return {"RENDER_UID": str(cfg.share.uid)}


def _ca_bundle() -> str | None:
    """The host's CA bundle, lent to the build as a secret so pip's TLS trusts what the host trusts."""
    candidates = (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        ssl.get_default_verify_paths().cafile,
        "/etc/ssl/certs/ca-certificates.crt",
    )
    return next((p for p in candidates if p and Path(p).is_file()), None)


def build_one(
    tool: str, name: str, stack_file: str | Path, base: str, push: str, *, login: RegistryLogin | None = None
) -> dict:
    """Build (unless its tag exists), push (per `push`) and record one image; returns its record entry."""
    from renderlab.lab import config, image_refs

    cfg = config.load(stack_file)
    declared = declared_args(name)
    args = {k: v for k, v in build_args(cfg).items() if k in declared}
    args |= {"BASE": base, "BASE_ID": inspect(tool, base, "{{.Id}}")}
    tag = content_tag(name, args)
    ref = f"{image_refs.pull_registry(cfg)}/{image_refs.repository(name)}:{tag}"
    if exists(tool, ref):
        log(f"{name}: {ref} is up to date (nothing to build)")
    else:
        ctx = stage(name)
        cmd = ["build", "--network", "host", "-t", ref]
        if tool == "podman":  # the docker format keeps SHELL (OCI drops it)
            cmd += ["--format", "docker"]
        cmd += ["-f", str(ctx / "images" / name / "Dockerfile")]
        for k in sorted(args.keys() & declared):
            cmd += ["--build-arg", f"{k}={args[k]}"]
        if ca := _ca_bundle():
            cmd += ["--secret", f"id=ca,src={ca}"]
        log(f"{name}: building {ref} on {base}")
        t0 = time.monotonic()
        try:
            _run(tool, *cmd, str(ctx), capture=False)
        finally:
            shutil.rmtree(ctx, ignore_errors=True)
        log(f"{name}: built in {time.monotonic() - t0:.0f} s")
    pushed = None
    target = image_refs.push_registry(cfg)
    login = login or RegistryLogin(None)
    if push == "always" and not login.ca_pem:
        raise CommandError(
            f"{name}: cannot push to {target}: no lab CA and registry login; give the host secrets file "
            "(--secrets FILE, or LAB_SECRETS for make images)"
        )
    if push == "always" or (push == "auto" and registry_answers(target, login.ca_pem)):
        pushed = image_refs.push_ref(cfg, name, tag)
        digest_file = STAGE / f"{name}.digest"
        digest_file.parent.mkdir(parents=True, exist_ok=True)
        digest_file.unlink(missing_ok=True)
        log(f"{name}: pushing to {pushed} (TLS with the lab CA, logged in as {login.user})")
        with tempfile.TemporaryDirectory(prefix="renderlab-push-") as tmp:
            certs, auth = login.write(Path(tmp), target)
            if tool == "podman":
                _run(
                    tool,
                    *push_command(tool, ref, pushed, digest_file=digest_file, certs=certs, auth=auth),
                    capture=False,
                )
            else:
                if not Path(f"/etc/docker/certs.d/{target}/ca.crt").is_file():
                    raise CommandError(
                        f"docker trusts a registry's CA only from /etc/docker/certs.d/{target}/ca.crt: copy "
                        "the lab CA there (make lab-ca-cert writes it), or use podman"
                    )
                _run(tool, "tag", ref, pushed)
                _run(
                    tool,
                    *push_command(tool, ref, pushed, digest_file=digest_file, certs=certs, auth=auth),
                    capture=False,
                )
                digest_file.write_text(inspect(tool, pushed, "{{index .RepoDigests 0}}").rpartition("@")[2])
    elif push == "auto":
        log(
            f"{name}: not pushed: no registry answers at {target} over TLS from the lab CA (the lab registry, "
            "from the lab config; give the host secrets file to trust its CA and log in)"
        )
    info = {
        "image_id": inspect(tool, ref, "{{.Id}}"),
        "local_digest": inspect(tool, ref, "{{.Digest}}"),
        "base": base,
        "size_bytes": int(inspect(tool, ref, "{{.Size}}") or 0),
        "pushed_to": pushed,
    }
    # The pushed digest (what the nodes pull) pins the Jobs' reference; a local digest would not resolve there.
    digest = digest_file.read_text().strip() if pushed and digest_file.is_file() else None
    image_refs.record(stack_file, name, tag, digest, built=info)
    return {"ref": ref, "tag": tag, "digest": digest, **info}


def build(
    names: list[str],
    stack_file: str | Path,
    push: str = "auto",
    base: str = "auto",
    secrets_file: str | Path | None = None,
) -> dict[str, dict]:
    from renderlab.lab import image_refs

    tool = engine()
    login = RegistryLogin(secrets_file)
    base_ref = resolve_base(tool, base, names[0])  # every Dockerfile's ARG BASE names the same image
    built = {name: build_one(tool, name, stack_file, base_ref, push, login=login) for name in names}
    log(f"references recorded in {image_refs.record_path(stack_file)}")
    return built


@cli.command("images")
def main(argv: list[str] | None = None) -> int:
    ap = cli.Parser(prog="python -m renderlab.workstation.images")
    ap.add_argument("action", choices=["build", "requirements"])
    ap.add_argument("--config", default=str(REPO / "Pulumi.example.yaml"), help="lab stack file")
    ap.add_argument("--only", choices=NAMES, action="append")
    ap.add_argument(
        "--push",
        choices=["auto", "always", "never"],
        default="auto",
        help="auto: push when the lab registry answers",
    )
    ap.add_argument(
        "--base", default="auto", help="auto | official | debootstrap | an image reference (default auto)"
    )
    ap.add_argument(
        "--secrets",
        default=os.environ.get("RENDERLAB_HOST_SECRETS"),
        help="the host secrets file: the lab CA and the registry's login a push needs (make lab-secrets)",
    )
    a = ap.parse_args(argv)
    names = a.only or list(NAMES)
    if a.action == "requirements":
        lock = LOCK.read_text(encoding="utf-8")
        for name, roots in IMAGE_ROOTS.items():
            requirements_path(name).write_text(pick_requirements(lock, roots), encoding="utf-8")
            print(requirements_path(name).relative_to(REPO))
    else:
        for name, r in build(names, a.config, a.push, a.base, a.secrets).items():
            print(
                f"{name} {r['ref']} {r['digest'] or r['local_digest'] + ' (local)'} "
                f"{r['size_bytes'] / 1e6:.0f} MB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
